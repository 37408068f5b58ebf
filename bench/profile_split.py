#!/usr/bin/env python3
"""Split a `perf script` dump of Sigil's server into the token's share and the host's, and the
host's share by what it was doing.

    python3 bench/profile_split.py PERF_SCRIPT_TXT SERVER_CPU_MS_PER_ENROLLMENT

A sample is the token's when any frame of its stack is in the PKCS#11 module (SoftHSM): that
work leaves the host on a real HSM. The rest is the host's, named by the innermost frame that
says what it was for. Each sample is also put under the background task it ran in (the OCSP
producer, the audit seal), or the requests otherwise.
"""
import collections
import re
import sys

# Innermost match wins (frames are listed leaf first).
KINDS = [
    ("store (SQLite, statements, commit)", re.compile(r"sqlite3|rusqlite|sigil::store::")),
    ("SCEP codec (CMS, envelope, reply)", re.compile(r"sigil::scep::|\bcms::|\bder::")),
    ("certificates (build, parse, check)", re.compile(r"sigil::pki::|rcgen::|x509_parser|x509_cert|yasna")),
    ("audit (hash chain, seal)", re.compile(r"sigil::authority::audit|audit_seal")),
    ("authority (decide, record)", re.compile(r"sigil::authority::|sigil::scep_service::")),
    ("HTTP (actix)", re.compile(r"actix_|h1::|http::")),
    ("token calls, host side (cryptoki)", re.compile(r"cryptoki::|sigil::hsm::")),
    ("runtime (tokio, threads)", re.compile(r"tokio::|parking_lot|std::thread")),
]
TASKS = [
    # The producer signs in a blocking task whose stack does not show the producer: its
    # signing and its store calls name it (nothing else signs OCSP answers under SCEP load).
    ("OCSP producer", re.compile(r"preparing_ocsp|produce_answers|sign_answers|put_ocsp_answers|ocsp_due")),
    ("audit seal", re.compile(r"audit_seal|seal_audit|audit_head|AuditSeal")),
]


def samples(path):
    block = []
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if not line.strip():
            if block:
                yield block
            block = []
        else:
            block.append(line)
    if block:
        yield block


def main():
    path, cpu_ms = sys.argv[1], float(sys.argv[2])
    total = 0
    token = 0
    host = collections.Counter()
    task_token = collections.Counter()
    task_host = collections.Counter()
    for block in samples(path):
        frames = [l.strip() for l in block[1:]]
        if not frames:
            continue
        total += 1
        stack = "\n".join(frames)
        task = next((name for name, rx in TASKS if rx.search(stack)), "requests")
        if "libsofthsm2" in stack:
            token += 1
            task_token[task] += 1
            continue
        task_host[task] += 1
        kind = "other (libc, kernel, allocation outside the above)"
        for f in frames:
            hit = next((name for name, rx in KINDS if rx.search(f)), None)
            if hit:
                kind = hit
                break
        host[kind] += 1
    if total == 0:
        print("no samples")
        return
    ms = lambda n: cpu_ms * n / total  # noqa: E731
    print(f"samples: {total}; server CPU {cpu_ms:.2f} ms per enrollment")
    print(f"token (inside the PKCS#11 module): {token / total:6.1%}  {ms(token):.2f} ms")
    print(f"host (everything else):            {1 - token / total:6.1%}  {ms(total - token):.2f} ms")
    print()
    print("by task                 token ms   host ms")
    for name in ["requests", "OCSP producer", "audit seal"]:
        print(f"  {name:<20} {ms(task_token[name]):8.2f}  {ms(task_host[name]):8.2f}")
    print()
    print("host, by what it was doing (ms per enrollment)")
    for name, n in host.most_common():
        print(f"  {ms(n):5.2f}  {n / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
