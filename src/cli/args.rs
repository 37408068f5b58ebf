//! The commands and their arguments, as clap reads them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Sigil: a SCEP certificate authority whose keys never leave the HSM.
///
/// Configuration comes from a TOML file (--config or SIGIL_CONFIG) and SIGIL_<SECTION>_<KEY>
/// environment variables, e.g. SIGIL_HSM_TOKEN, SIGIL_HSM_PIN_FILE. `sigil config show` prints
/// the effective settings.
#[derive(Parser, Debug)]
#[command(name = "sigil", version, about, long_about)]
pub(super) struct Cli {
    /// Configuration file (TOML). Long form only: `-c` is `sigil bench`'s concurrency.
    #[arg(long, global = true, env = "SIGIL_CONFIG")]
    pub(super) config: Option<PathBuf>,
    /// Log format: human or json (overrides [log] format).
    #[arg(long, global = true, value_parser = ["human", "json"])]
    pub(super) log_format: Option<String>,
    /// Log filter, e.g. info or sigil=debug (overrides [log] level; RUST_LOG wins). Commands
    /// other than `serve` and `gateway` log warnings only unless this asks for more.
    #[arg(long, global = true)]
    pub(super) log_level: Option<String>,
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Subcommand, Debug)]
pub(super) enum Command {
    /// Run the server (SCEP, health, readiness and metrics) until SIGTERM.
    Serve,
    /// Run the SCEP gateway (`[gateway]` section): the public front that forwards SCEP, CRL
    /// and OCSP to `sigil serve` nodes over mutual TLS and holds no key, PIN or database URL.
    Gateway,
    /// Load generator: drive a SCEP URL (Sigil's or any other server's) and check every
    /// answer; or, with `hsm`, measure the token's own floor.
    Bench(BenchArgs),
    /// Issue the gateway's TLS client certificate and the core's TLS server certificate from
    /// the CA on the token, with their keys, into a directory.
    GatewayCert {
        /// Where to write core.pem, core.key, gateway.pem, gateway.key and ca.pem.
        #[arg(long)]
        out: PathBuf,
        /// A name gateways use to reach the core: DNS name or IP address (repeatable).
        #[arg(long = "core-name", required = true)]
        core_names: Vec<String>,
        /// The gateway certificate's common name (list it in `server.gateway_names`).
        #[arg(long, default_value = "sigil-gateway")]
        gateway_name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
    /// Key ceremony: create the CA and RA keys in the token and their certificates.
    Init(InitArgs),
    /// CA certificate operations.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The database: migrations.
    #[command(subcommand)]
    Db(DbCommand),
    /// Issued certificates, read from the store.
    #[command(subcommand)]
    Cert(CertCommand),
    /// One-time challenges (NDES-style dynamic challenges).
    #[command(subcommand)]
    Challenge(ChallengeCommand),
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// How people sign in.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Intune connections (`[intune.NAME]`).
    #[command(subcommand)]
    Intune(IntuneCommand),
    /// Configuration profiles for devices.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Print the REST API's OpenAPI document (what `GET /api/v1/openapi.json` serves and
    /// `docs/openapi.json` holds); needs no configuration.
    Openapi,
}

#[derive(Subcommand, Debug)]
pub(super) enum ProfileCommand {
    /// Write a signed Apple configuration profile (the CA's whole chain and a SCEP payload
    /// with a fresh one-time challenge), or the declarative-management SCEP asset.
    Export {
        /// The certificate profile.
        name: String,
        /// `mobileconfig` or `ddm`.
        #[arg(long, default_value = "mobileconfig")]
        format: String,
        /// The device's name: the challenge is bound to it and the profile asks for it as CN.
        #[arg(long)]
        cn: Option<String>,
        /// Minutes the challenge works.
        #[arg(long, default_value_t = 60)]
        ttl_minutes: u32,
        /// Where devices reach SCEP (default: server.public_url).
        #[arg(long)]
        url: Option<String>,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum IntuneCommand {
    /// Sign in to Entra ID, discover Intune's endpoints through Graph, get an Intune API
    /// token; say what is wrong in words (consent missing, wrong tenant, missing permission).
    Check {
        /// The `[intune.NAME]` connection.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum IdentityCommand {
    /// Make (the first time) the RSA key on the token that signs Sigil's OpenID Connect client
    /// assertions (`private_key_jwt`), with a self-signed certificate; print the JWKS to
    /// register with the provider (Okta, Keycloak), and write the certificate (Entra ID,
    /// Login.gov).
    ClientKey {
        /// The key's label (default: identity.oidc.client_key, else `sigil-oidc-client`).
        #[arg(long)]
        label: Option<String>,
        /// Write the certificate (PEM) here.
        #[arg(long)]
        certificate: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum AuditCommand {
    /// Check the hash chain, the stored head and the audit key's seals; name the first broken
    /// record.
    Verify {
        /// Also check every seal of this heads file (`audit.heads_file`, as shipped elsewhere).
        #[arg(long)]
        heads: Option<PathBuf>,
    },
    /// Write the log as JSON lines.
    Export {
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum TokenCommand {
    /// Create a token; the secret is printed once.
    Create {
        /// admin, officer, auditor, mdm or user (self-service: the name is the person's email).
        #[arg(long)]
        role: String,
        /// A name for people, e.g. intune-prod-2026.
        #[arg(long)]
        name: String,
        /// Expire after this many days.
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// mdm tokens: a profile it may mint one-time challenges for (repeatable; `*`: every
        /// profile open to integrations).
        #[arg(long = "profile")]
        profiles: Vec<String>,
        /// mdm tokens: a directory whose registrations' SCEP payloads it may collect
        /// (repeatable; `*`: all).
        #[arg(long = "directory")]
        directories: Vec<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id.
    Revoke {
        /// The token id (tok_…).
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum ChallengeCommand {
    /// Make a one-time challenge: it works for exactly one enrollment on its profile, before it
    /// expires, for a CSR that meets its bindings. Printed once; only its hash is stored.
    Create {
        /// The profile it is for (default: scep.default_profile).
        #[arg(long)]
        profile: Option<String>,
        /// The CSR must have this common name.
        #[arg(long)]
        cn: Option<String>,
        /// The CSR must carry this SAN (dns:…, email:…, uri:…, upn:…, ip:…); repeatable.
        #[arg(long = "san")]
        sans: Vec<String>,
        /// The device it is for (recorded).
        #[arg(long)]
        device_id: Option<String>,
        /// Lifetime: 60m, 12h, 1d.
        #[arg(long, default_value = "60m")]
        ttl: String,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum DbCommand {
    /// Apply the schema migrations (also done at every start) and print the schema version.
    Migrate {
        /// Create the store if there is none, and bind it to the token's CA (`sigil init`
        /// does this for a new CA; use this for a CA made without a store, or a new
        /// PostgreSQL database of an existing CA).
        #[arg(long)]
        create: bool,
        /// With --create: the token's store is lost for good; bind this new one instead
        /// (recorded in its audit log). Its revocations and CRL numbers are gone with it.
        #[arg(long, requires = "create")]
        replace_store: bool,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum CertCommand {
    /// List certificates, newest first (with --expiring: valid ones, soonest ending first).
    List {
        /// Only this profile.
        #[arg(long)]
        profile: Option<String>,
        /// Only this status: valid or revoked.
        #[arg(long, value_parser = ["valid", "revoked"])]
        status: Option<String>,
        /// Only certificates expiring within this time: 30d, 12h, or days.
        #[arg(long)]
        expiring: Option<String>,
        /// Only subjects containing this text.
        #[arg(long)]
        subject: Option<String>,
        /// Only certificates issued to this device (its MDM ID).
        #[arg(long)]
        device: Option<String>,
        /// At most this many (0: all).
        #[arg(long, default_value_t = 0)]
        limit: usize,
    },
    /// Show one certificate by serial (hex).
    Show {
        /// Serial number in hex (as `cert list` prints it).
        serial: String,
    },
    /// Revoke a certificate and publish a new CRL (signed on the token).
    Revoke {
        /// Serial number in hex.
        serial: String,
        /// RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged,
        /// superseded, cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise.
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
    /// Write one certificate as PEM (or DER with --der) to stdout or a file.
    Export {
        /// Serial number in hex.
        serial: String,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// DER instead of PEM.
        #[arg(long)]
        der: bool,
    },
}

#[derive(Args, Debug, Clone)]
pub(super) struct RaArgs {
    /// RA certificate subject (default: "CN=<CA common name> SCEP RA").
    #[arg(long)]
    pub(super) ra_subject: Option<String>,
    /// RA certificate validity in days (capped at the CA's).
    #[arg(long, default_value_t = 730)]
    pub(super) ra_days: u32,
    /// RA RSA key size in bits.
    #[arg(long, default_value_t = 2048)]
    pub(super) ra_key_size: u32,
    /// Destroy existing keys and certificates with the configured labels first.
    #[arg(long)]
    pub(super) force: bool,
}

#[derive(Args, Debug)]
pub(super) struct InitArgs {
    /// CA key type: rsa2048, rsa3072, rsa4096, p256 or p384. RSA is the default because some SCEP
    /// clients (micromdm's scepclient among them) cannot encrypt to an EC certificate in
    /// GetCACert.
    #[arg(long, default_value = "rsa3072")]
    pub(super) ca_key: String,
    /// CA subject, e.g. "CN=Example Device CA,O=Example Agency,C=US".
    #[arg(long, default_value = "CN=Sigil Device CA,O=Sigil")]
    pub(super) ca_subject: String,
    /// CA certificate validity in days.
    #[arg(long, default_value_t = 3650)]
    pub(super) ca_days: u32,
    /// Instead of a self-signed root, write a CSR for an existing root to this file;
    /// finish with `sigil ca import`.
    #[arg(long)]
    pub(super) csr: Option<PathBuf>,
    #[command(flatten)]
    pub(super) ra: RaArgs,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct BenchArgs {
    #[command(subcommand)]
    pub(super) what: Option<BenchCommand>,
    /// SCEP URL to drive (`http://127.0.0.1:8080/scep`).
    #[arg(long)]
    pub(super) url: Option<String>,
    /// Challenge password the CSRs carry.
    #[arg(long, default_value = "")]
    pub(super) challenge: String,
    /// Parallel requests.
    #[arg(long, short = 'c', default_value_t = 4)]
    pub(super) concurrency: usize,
    /// Requests to send (built before the clock starts).
    #[arg(long, short = 'n', default_value_t = 500)]
    pub(super) requests: usize,
    /// Run this long instead of a fixed count (`30s`, `2m`).
    #[arg(long)]
    pub(super) duration: Option<String>,
    /// RSA key size of the simulated devices.
    #[arg(long, default_value_t = 2048)]
    pub(super) key_bits: u32,
    /// Distinct device keys (made before the clock starts).
    #[arg(long, default_value_t = 32)]
    pub(super) keys: usize,
    /// The server's PID: report its CPU time per enrollment and its peak memory.
    #[arg(long)]
    pub(super) server_pid: Option<u32>,
}

#[derive(Subcommand, Debug)]
pub(super) enum BenchCommand {
    /// The token's floor: RA decrypt, CA sign and RA sign per second, with 1 and 2 threads.
    Hsm {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// Fill the configured store with certificates for measurements, without the token: real
    /// X.509 named after the CA but signed by a throwaway key, so only for a store made for
    /// measuring (audited as `certificates_imported`).
    Fill {
        /// Certificates to load.
        #[arg(long, default_value_t = 1_000_000)]
        certs: usize,
        /// Every n-th one is revoked (0: none).
        #[arg(long, default_value_t = 10)]
        revoked_every: usize,
        /// Their profile.
        #[arg(long, default_value = "bench-fill")]
        profile: String,
        /// Certificates per database transaction.
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum CaCommand {
    /// Import the CA certificate signed by an existing root (after `init --csr`) and issue the
    /// RA certificate.
    Import {
        /// The signed CA certificate (PEM or DER).
        #[arg(long)]
        cert: PathBuf,
        /// The issuing CA's certificate and its parents up to the root (PEM).
        #[arg(long)]
        chain: PathBuf,
        #[command(flatten)]
        ra: RaArgs,
    },
    /// Show the CA and RA certificates stored on the token.
    Show,
    /// Prepare the next CA generation: a new CA key and certificate on the token, link
    /// certificates both ways, and RA certificates from the new CA. GetNextCACert offers it
    /// until `sigil ca activate`.
    Rollover {
        /// Key type of the new CA: rsa2048, rsa3072, rsa4096, p256 or p384.
        #[arg(long, default_value = "rsa3072")]
        ca_key: String,
        /// Validity of the new CA certificate, in days.
        #[arg(long, default_value_t = 3650)]
        ca_days: u32,
        /// Subject of the new CA; default: the current one with " G<n>" after the CN.
        #[arg(long)]
        ca_subject: Option<String>,
        /// Validity of the new RA certificates, in days.
        #[arg(long, default_value_t = 730)]
        ra_days: u32,
    },
    /// Switch issuance to the CA prepared by `sigil ca rollover`; the old one is retired
    /// (restart every `sigil serve` afterwards).
    Activate,
}

#[derive(Subcommand, Debug)]
pub(super) enum ConfigCommand {
    /// Print the effective configuration (file + environment) as TOML.
    Show,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks every subcommand's arguments (duplicate names and short options, a global
    /// flag clashing with a subcommand's) only in debug builds, and only when that subcommand
    /// is parsed: check them all here.
    #[test]
    fn every_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
