"""Ask a SCEP server for its next CA certificate with PyScep's client, as a device would.

Usage: pyscep_nextca.py SCEP_URL
Prints one JSON object: the capabilities, whether rollover is advertised, and the subjects and
DER (hex) of the certificates GetNextCACert returned (PyScep verifies the answer's signature
with the RA certificate from GetCACert before it returns them).
"""
import json
import re
import sys

# oscrypto 1.3.0 (a PyScep dependency) reads only one-digit OpenSSL version parts and fails on
# "OpenSSL 3.0.19"; this is its upstream fix (unreleased), applied for the import only.
_search = re.search


def _version_fix(pattern, string, flags=0):
    if pattern == "\\b(\\d\\.\\d\\.\\d[a-z]*)\\b":
        pattern = "\\b(\\d+\\.\\d+\\.\\d+[a-z]*)\\b"
    return _search(pattern, string, flags)


re.search = _version_fix
import requests  # noqa: E402
from scep.Client.client import Client  # noqa: E402
from scep.Client.message import SCEPMessage  # noqa: E402

re.search = _search

url = sys.argv[1]
client = Client(url)
caps = client.get_ca_capabilities()
out = {"rollover_supported": caps.is_rollover_supported(), "certificates": []}
if caps.is_rollover_supported():
    # Client.rollover_certificate() in PyScep 0.0.14 wraps the parsed certificates a second
    # time and fails; these are its own steps without that last one: GetCACert, GetNextCACert,
    # and PyScep's parser checking the signature with the RA certificate from GetCACert.
    ca_certs = client.get_ca_certs()
    res = requests.get(url, params={"operation": "GetNextCACert", "message": ""})
    assert res.status_code == 200, res.status_code
    assert res.headers["content-type"] == "application/x-x509-next-ca-cert"
    msg = SCEPMessage.parse(raw=res.content, signer_cert=ca_certs.signer)
    for cert in msg.certificates:
        der = cert.to_der()
        out["certificates"].append({"subject": cert.subject.human_friendly, "der": der.hex()})
print(json.dumps(out))
