//! Command-line interface of `sigil`, on clap. Errors are reported as one line that names the
//! fix (`anyhow` context chains joined by `: `), with exit status 2.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use sigil::ceremony::{self, InitOptions};
use sigil::config::Config;
use sigil::hsm::{Hsm, KeySpec};
use sigil::store::OpenMode;
use sigil::telemetry::{self, LogFormat};

mod args;
mod audit;
mod integrations;
use integrations::{authority_settings, identity_client_key, intune_connection};
mod rollover;
mod serve;
use serve::serve;

use args::*;

/// Entry point: parse, run, report.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Each cause once: a store or token error's text already ends with its cause's.
            eprintln!("error: {}", sigil::reason::chain(&*e));
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Command::Openapi = cli.command {
        print!("{}", sigil::http::api::openapi::document());
        return Ok(());
    }
    if let Command::Gateway = cli.command {
        return Ok(sigil::gateway::run_command(
            cli.config.as_deref(),
            cli.log_format.as_deref(),
            cli.log_level.as_deref(),
        )?);
    }
    let config = Config::load(cli.config.as_deref())?;
    let format = match cli.log_format.as_deref() {
        Some("json") => LogFormat::Json,
        Some(_) => LogFormat::Human,
        None => config.log.format,
    };
    // The server logs at the configured level; a tool only warns, unless asked (its output
    // is its answer).
    let level = match (&cli.log_level, &cli.command) {
        (Some(l), _) => l.as_str(),
        (None, Command::Serve) => config.log.level.as_str(),
        (None, _) => "warn",
    };
    telemetry::init_logging(format, level);
    // Run with no configuration file and no token settings in the environment (say from
    // another directory, the quickstart's variables not loaded): whatever fails for it, the
    // first thing to say is that nothing was configured.
    let unconfigured = cli.config.is_none() && config.hsm.pin_source().is_err();
    let done = match cli.command {
        Command::Serve => serve(config),
        Command::Gateway | Command::Openapi => Ok(()),
        Command::Bench(args) => bench(&config, args),
        Command::GatewayCert {
            out,
            core_names,
            gateway_name,
            days,
        } => rollover::gateway_cert(&config, &out, &core_names, &gateway_name, days),
        Command::Init(args) => init(&config, args),
        Command::Ca(CaCommand::Import { cert, chain, ra }) => import(&config, cert, chain, ra),
        Command::Ca(CaCommand::Show) => show(&config),
        Command::Ca(CaCommand::Rollover {
            ca_key,
            ca_days,
            ca_subject,
            ra_days,
        }) => rollover::rollover(&config, &ca_key, ca_days, ca_subject, ra_days),
        Command::Ca(CaCommand::Activate) => rollover::activate(&config),
        Command::Db(DbCommand::Migrate {
            create: false,
            replace_store: _,
        }) => with_store(&config, OpenMode::Migrate, |_| async {
            println!(
                "database schema is at version {}",
                sigil::store::SCHEMA_VERSION
            );
            Ok(())
        }),
        Command::Db(DbCommand::Migrate {
            create: true,
            replace_store,
        }) => {
            let hsm = open_hsm(&config)?;
            let ca = configured_ca(&config, &hsm)?;
            with_store(&config, OpenMode::Create, |store| async move {
                sigil::authority::binding::bind(&hsm, store.as_ref(), &ca, "cli", replace_store)
                    .await?;
                println!(
                    "database schema is at version {}; the store is bound to the token's CA",
                    sigil::store::SCHEMA_VERSION
                );
                Ok(())
            })
        }
        Command::Cert(c) => cert(&config, c),
        Command::Token(t) => token(&config, t),
        Command::Profile(ProfileCommand::Export {
            name,
            format,
            cn,
            ttl_minutes,
            url,
            out,
        }) => integrations::export_profile(&config, &name, &format, cn, ttl_minutes, url, out),
        Command::Intune(IntuneCommand::Check { name }) => {
            let hsm = open_hsm(&config)?;
            let intune = intune_connection(&config, &hsm, &name)?;
            let steps = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(intune.check());
            hsm.close();
            match steps {
                Ok(steps) => {
                    for s in steps {
                        println!("ok: {s}");
                    }
                    println!("[intune.{name}] is ready");
                    Ok(())
                }
                Err(e) => anyhow::bail!("[intune.{name}]: {e}"),
            }
        }
        Command::Identity(IdentityCommand::ClientKey { label, certificate }) => {
            identity_client_key(&config, label, certificate)
        }
        Command::Audit(AuditCommand::Verify { heads }) => audit::verify(&config, heads.as_deref()),
        Command::Audit(AuditCommand::Export { out }) => audit::export(&config, out.as_deref()),
        Command::Challenge(ChallengeCommand::Create {
            profile,
            cn,
            sans,
            device_id,
            ttl,
        }) => {
            let profile = profile.unwrap_or_else(|| config.scep.default_profile.clone());
            if !config.profiles.contains_key(&profile) {
                anyhow::bail!("no profile `{profile}` in the configuration");
            }
            let ttl = parse_span(&ttl)?;
            let bindings = sigil::authority::challenge::Bindings {
                cn,
                sans,
                device_id,
                ..Default::default()
            };
            sigil::authority::challenge::may_mint(
                &profile,
                config.registration_only(&profile),
                None,
            )
            .map_err(anyhow::Error::msg)?;
            with_store(&config, OpenMode::Existing, |store| async move {
                let m = sigil::authority::challenge::create(
                    store.as_ref(),
                    &profile,
                    &bindings,
                    ttl,
                    "cli",
                )
                .await?;
                println!("{}", m.challenge);
                eprintln!(
                    "challenge {} for profile {profile}, expires {}",
                    m.id,
                    time_text(m.expires_at)
                );
                Ok(())
            })
        }
        Command::Config(ConfigCommand::Show) => {
            print!("{}", config.to_toml());
            Ok(())
        }
    };
    if unconfigured {
        return done.context(
            "no configuration file was read: give --config FILE or set SIGIL_CONFIG \
             (after deploy/quickstart.sh, `. var/quickstart.env` in its directory sets it)",
        );
    }
    done
}

/// Run `f` with the configured store on a small runtime; only `db migrate` and `init`
/// change the schema or create a store (`mode`).
pub(super) fn with_store<F, Fut>(config: &Config, mode: OpenMode, f: F) -> Result<()>
where
    F: FnOnce(std::sync::Arc<dyn sigil::store::Store>) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    rt.block_on(async {
        let store = sigil::store::open(&config.store_settings(), mode)
            .await
            .context("store")?;
        f(store).await
    })
}

/// The certificate of the configured CA key, from the token (the CA a store is bound to).
fn configured_ca(config: &Config, hsm: &Hsm) -> Result<Vec<u8>> {
    let label = config.hsm.ca_key_uri()?.label()?.to_owned();
    hsm.certificate_blocking(&label)?.with_context(|| {
        format!(
            "no CA certificate `{label}` on token `{}`: run `sigil init` first",
            hsm.token()
        )
    })
}

/// `30d`, `12h`, `45m`, `30s` or a number of days, in seconds.
fn parse_span(text: &str) -> Result<i64> {
    sigil::config::parse_span(text)
        .with_context(|| format!("`{text}`: use 30d, 12h, 45m, 30s or a number of days"))
}

fn time_text(unix: i64) -> String {
    sigil::clock::rfc3339(unix)
}

fn cert(config: &Config, c: CertCommand) -> Result<()> {
    use sigil::store::{CertFilter, CertStatus};
    match c {
        CertCommand::List {
            profile,
            status,
            expiring,
            subject,
            device,
            limit,
        } => {
            if expiring.is_some() && status.as_deref() == Some("revoked") {
                anyhow::bail!(
                    "--expiring lists valid certificates: it cannot be combined with --status revoked"
                );
            }
            let filter = CertFilter {
                profile,
                status: status.map(|s| {
                    if s == "revoked" {
                        CertStatus::Revoked
                    } else {
                        CertStatus::Valid
                    }
                }),
                expiring_within_secs: expiring.as_deref().map(parse_span).transpose()?,
                subject_contains: subject,
                device_id: device,
                limit,
                ..Default::default()
            };
            with_store(config, OpenMode::Existing, |store| async move {
                let certs = store.certificates(&filter).await?;
                println!(
                    "{:<34} {:<8} {:<21} {:<12} SUBJECT",
                    "SERIAL", "STATUS", "NOT AFTER", "PROFILE"
                );
                for c in &certs {
                    println!(
                        "{:<34} {:<8} {:<21} {:<12} {}",
                        c.serial,
                        if c.status == CertStatus::Valid {
                            "valid"
                        } else {
                            "revoked"
                        },
                        time_text(c.not_after),
                        c.profile,
                        c.subject
                    );
                }
                eprintln!("{} certificate(s)", certs.len());
                Ok(())
            })
        }
        CertCommand::Revoke { serial, reason } => {
            let code = sigil::pki::parse_revocation_reason(&reason).with_context(|| {
                format!(
                    "--reason `{reason}`: use one of {}",
                    sigil::pki::REVOCATION_REASONS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            let hsm = open_hsm(config)?;
            with_store(config, OpenMode::Existing, |store| async move {
                let ra = sigil::authority::Authority::open(
                    &hsm,
                    &authority_settings(config, &hsm)?,
                    store,
                )
                .await?;
                if !ra
                    .revoke(&serial, code, sigil::authority::Revoker::System("cli"))
                    .await?
                {
                    anyhow::bail!("no valid certificate with serial {serial}");
                }
                println!("revoked {serial} ({reason}); a new CRL is published");
                Ok(())
            })
        }
        CertCommand::Show { serial } => {
            with_store(config, OpenMode::Existing, |store| async move {
                let serial = serial.trim().trim_start_matches("0x").to_ascii_lowercase();
                let c = store
                    .certificate(&serial)
                    .await?
                    .with_context(|| format!("no certificate with serial {serial}"))?;
                println!("serial:      {}", c.serial);
                println!("subject:     {}", c.subject);
                println!("SANs:        {}", c.sans);
                println!("issuer:      {}", c.issuer);
                println!("not before:  {}", time_text(c.not_before));
                println!("not after:   {}", time_text(c.not_after));
                println!("profile:     {}", c.profile);
                println!(
                    "status:      {}",
                    if c.status == CertStatus::Valid {
                        "valid"
                    } else {
                        "revoked"
                    }
                );
                println!("transaction: {}", c.transaction_id);
                println!("SHA-256:     {}", sigil::pki::sha256_fingerprint(&c.der));
                Ok(())
            })
        }
        CertCommand::Export { serial, out, der } => {
            with_store(config, OpenMode::Existing, |store| async move {
                let serial = serial.trim().trim_start_matches("0x").to_ascii_lowercase();
                let c = store
                    .certificate(&serial)
                    .await?
                    .with_context(|| format!("no certificate with serial {serial}"))?;
                let bytes = if der {
                    c.der
                } else {
                    sigil::pki::to_pem(&c.der).into_bytes()
                };
                match out {
                    Some(path) => std::fs::write(&path, bytes)
                        .with_context(|| format!("cannot write {}", path.display()))?,
                    None => std::io::Write::write_all(&mut std::io::stdout(), &bytes)?,
                }
                Ok(())
            })
        }
    }
}

fn token(config: &Config, t: TokenCommand) -> Result<()> {
    use sigil::authority::access::{create_token, Role};
    match t {
        TokenCommand::Create {
            role,
            name,
            expires_in_days,
            profiles,
            directories,
        } => {
            let role = Role::parse(&role).with_context(|| {
                format!("--role `{role}`: use admin, officer, auditor, mdm or user")
            })?;
            let scope = sigil::store::TokenScope {
                profiles,
                directories,
            };
            let (known_profiles, known_directories) = config.scope_names();
            sigil::authority::access::check_scope(
                role,
                &scope,
                &known_profiles,
                &known_directories,
            )
            .map_err(anyhow::Error::msg)?;
            with_store(config, OpenMode::Existing, |store| async move {
                let (secret, rec) = create_token(
                    store.as_ref(),
                    role,
                    &name,
                    expires_in_days.map(|d| i64::from(d) * 86_400),
                    scope,
                    "cli",
                    sigil::authority::access::TokenOwnership {
                        owner: sigil::authority::access::Owner::Itself,
                        awaiting_approval: false,
                    },
                )
                .await?;
                println!("{secret}");
                eprintln!("token {} ({}, {}); shown once", rec.id, rec.role, rec.name);
                Ok(())
            })
        }
        TokenCommand::List => with_store(config, OpenMode::Existing, |store| async move {
            println!(
                "{:<18} {:<8} {:<25} {:<10} NAME",
                "ID", "ROLE", "LAST USED", "STATE"
            );
            for t in store.tokens().await? {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else if t.expires_at.is_some_and(|e| e <= sigil::store::now()) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{:<18} {:<8} {:<25} {:<10} {}",
                    t.id,
                    t.role,
                    t.last_used_at
                        .map(time_text)
                        .unwrap_or_else(|| "never".into()),
                    state,
                    t.name
                );
            }
            Ok(())
        }),
        TokenCommand::Revoke { id } => with_store(config, OpenMode::Existing, |store| async move {
            if store.revoke_token(&id, "cli").await? {
                println!("revoked {id}");
                Ok(())
            } else {
                anyhow::bail!("no active token `{id}` (see `sigil token list`)")
            }
        }),
    }
}

fn open_hsm(config: &Config) -> Result<Hsm> {
    let hsm_config = config.hsm.hsm_config()?;
    Ok(Hsm::open(&hsm_config)?)
}

fn init_options(ra: &RaArgs) -> InitOptions {
    InitOptions {
        ca_key: KeySpec::EcP384,
        ca_subject: String::new(),
        ca_days: 0,
        ra_bits: ra.ra_key_size,
        ra_subject: ra.ra_subject.clone(),
        ra_days: ra.ra_days,
        csr: None,
        force: ra.force,
    }
}

fn init(config: &Config, args: InitArgs) -> Result<()> {
    let ca_key = KeySpec::parse(&args.ca_key).with_context(|| {
        format!(
            "--ca-key `{}`: use rsa2048, rsa3072, rsa4096, p256 or p384",
            args.ca_key
        )
    })?;
    let opts = InitOptions {
        ca_key,
        ca_subject: args.ca_subject,
        ca_days: args.ca_days,
        csr: args.csr,
        ..init_options(&args.ra)
    };
    if opts.csr.is_none() {
        new_store_place(config, opts.force)?;
    }
    let hsm = open_hsm(config)?;
    let report = ceremony::init(&hsm, &config.hsm, &config.server.data_dir, &opts)?;
    print!("{report}");
    if opts.csr.is_some() {
        // The CA certificate comes with `sigil ca import`; the store is made then.
        hsm.close();
        return Ok(());
    }
    make_store(config, hsm)
}

/// After the CA certificate is on the token (`init`, `ca import`): make the store, bind it to
/// this CA, and print the first admin token (the break-glass token, `initial-admin`), so the
/// API can be used at once.
fn make_store(config: &Config, hsm: Hsm) -> Result<()> {
    let ca = configured_ca(config, &hsm)?;
    let result = with_store(config, OpenMode::Create, |store| async move {
        sigil::authority::binding::bind(&hsm, store.as_ref(), &ca, "sigil init", true).await?;
        // The RA as `serve` loads it: this makes the delegated OCSP responder (key and
        // certificate on the token) and records the CA's certificates in the store.
        let ra = sigil::authority::Authority::open(
            &hsm,
            &authority_settings(config, &hsm)?,
            store.clone(),
        )
        .await?;
        ra.record_certificates().await?;
        let label = sigil::authority::responder::label_for(ra.ca_name());
        println!("OCSP responder key: {}", hsm.uri(&label));
        println!(
            "  certificate: {} (renewed by sigil serve before it expires)",
            label
        );
        let (secret, rec) = sigil::authority::access::create_token(
            store.as_ref(),
            sigil::authority::access::Role::Admin,
            "initial-admin",
            None,
            sigil::store::TokenScope::default(),
            "sigil init",
            sigil::authority::access::TokenOwnership {
                owner: sigil::authority::access::Owner::Named(sigil::store::BREAK_GLASS.into()),
                awaiting_approval: false,
            },
        )
        .await?;
        println!("Admin API token ({}; shown once): {secret}", rec.id);
        hsm.close();
        Ok(())
    });
    result.context(
        "the keys are made, but the store is not: fix the cause, then run `sigil db migrate --create`",
    )
}

/// `sigil init` makes a new CA, with a new store: where the store goes must be empty, before
/// any key is made. With `force` (a new CA replacing the token's), an embedded store there is
/// moved aside (`sigil.db.replaced-<time>`), keeping the old CA's records and audit log.
fn new_store_place(config: &Config, force: bool) -> Result<()> {
    if !config.database.url.is_empty() {
        let found = with_store(config, OpenMode::Existing, |_| async { Ok(()) });
        if found.is_ok() {
            anyhow::bail!(
                "database.url points at a database that holds a Sigil store already: a new CA needs an empty database (or drop its tables first)"
            );
        }
        return Ok(());
    }
    let path = config.server.data_dir.join("sigil.db");
    if !path.exists() {
        return Ok(());
    }
    if !force {
        anyhow::bail!(
            "a store already exists at {}: `sigil init` makes a new CA, which needs a new store; point server.data_dir elsewhere, or add --force to replace the token's CA (the old store is kept aside)",
            path.display()
        );
    }
    let stamp = sigil::clock::now();
    for suffix in ["", "-wal", "-shm"] {
        let from = config.server.data_dir.join(format!("sigil.db{suffix}"));
        if from.exists() {
            let to = config
                .server
                .data_dir
                .join(format!("sigil.db.replaced-{stamp}{suffix}"));
            std::fs::rename(&from, &to)
                .with_context(|| format!("cannot move {} aside", from.display()))?;
        }
    }
    eprintln!(
        "the previous CA's store is kept as {}",
        config
            .server
            .data_dir
            .join(format!("sigil.db.replaced-{stamp}"))
            .display()
    );
    Ok(())
}

fn import(config: &Config, cert: PathBuf, chain: PathBuf, ra: RaArgs) -> Result<()> {
    let cert_bytes =
        std::fs::read(&cert).with_context(|| format!("cannot read --cert `{}`", cert.display()))?;
    let chain_bytes = std::fs::read(&chain)
        .with_context(|| format!("cannot read --chain `{}`", chain.display()))?;
    let cert_der = ceremony::read_certificates(&cert_bytes)?
        .into_iter()
        .next()
        .context("--cert holds no certificate")?;
    let chain_der = ceremony::read_certificates(&chain_bytes)?;
    new_store_place(config, ra.force)?;
    let hsm = open_hsm(config)?;
    let report = ceremony::import_ca(
        &hsm,
        &config.hsm,
        &config.server.data_dir,
        &cert_der,
        &chain_der,
        &init_options(&ra),
    )?;
    print!("{report}");
    make_store(config, hsm)
}

fn show(config: &Config) -> Result<()> {
    let hsm = open_hsm(config)?;
    let mut labels = vec![("CA", config.hsm.ca_key_uri()?)];
    labels.push(("RA", config.hsm.ra_key_uri()?));
    if !config.hsm.ra_decrypt_key.is_empty() {
        labels.push(("RA decryption", config.hsm.ra_decrypt_key_uri()?));
    }
    for (role, uri) in labels {
        let label = uri.label()?;
        match hsm.certificate_blocking(label)? {
            Some(der) => {
                let (_, c) = x509_parser::parse_x509_certificate(&der)
                    .map_err(|e| anyhow::anyhow!("{role} certificate on token: {e}"))?;
                println!("{role}: {uri}");
                println!("  subject: {}", c.subject());
                println!("  issuer:  {}", c.issuer());
                println!(
                    "  valid:   {} until {}",
                    c.validity().not_before,
                    c.validity().not_after
                );
                println!("  SHA-256: {}", sigil::pki::sha256_fingerprint(&der));
            }
            None => {
                hsm.close();
                anyhow::bail!(
                    "no {role} certificate `{label}` on token `{}`: if the token was set up under another label, fix hsm.{} in the configuration; otherwise run `sigil init`",
                    hsm.token(),
                    if role == "CA" { "ca_key" } else { "ra_key" }
                );
            }
        }
    }
    hsm.close();
    Ok(())
}

fn bench(config: &Config, args: BenchArgs) -> Result<()> {
    if let Some(BenchCommand::Fill {
        certs,
        revoked_every,
        profile,
        batch,
    }) = args.what
    {
        let opts = sigil::bench::fill::FillOptions {
            certs,
            revoked_every,
            profile,
            batch,
        };
        return with_store(config, OpenMode::Existing, |store| async move {
            let report = sigil::bench::fill::fill(store, &opts, |n| {
                if n % 100_000 < opts.batch.max(1) {
                    eprintln!("{n} loaded");
                }
            })
            .await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        });
    }
    if let Some(BenchCommand::Hsm { seconds }) = args.what {
        let hsm = open_hsm(config)?;
        let ca = config.hsm.ca_key_uri()?;
        let ca_alg = sigil::hsm::TokenKey::open(&hsm, &ca)?.sign_alg();
        let report = sigil::bench::hsm::run(
            &hsm,
            &ca,
            ca_alg,
            &config.hsm.ra_key_uri()?,
            &config.hsm.ra_decrypt_key_uri()?,
            std::time::Duration::from_secs_f64(seconds.clamp(0.1, 60.0)),
        )?;
        println!("{}", serde_json::to_string(&report)?);
        hsm.close();
        return Ok(());
    }
    let url = args
        .url
        .context("--url is required (the SCEP URL to drive), or `sigil bench hsm`")?;
    let duration = args
        .duration
        .as_deref()
        .map(parse_span)
        .transpose()?
        .map(|s| std::time::Duration::from_secs(s.max(1) as u64));
    let opts = sigil::bench::LoadOptions {
        url,
        challenge: args.challenge,
        concurrency: args.concurrency.max(1),
        requests: args.requests,
        duration,
        key_bits: args.key_bits,
        key_pool: args.keys.max(1),
        server_pid: args.server_pid,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("runtime")?;
    let report = rt.block_on(sigil::bench::run(&opts)).context("bench")?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
