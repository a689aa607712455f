//! The `tokengate` command.
//!
//! ```text
//! tokengate [--config FILE] [--log-format json|text]   run the proxy (FILE or $TOKENGATE_CONFIG)
//! tokengate check --config FILE [--strict]             validate a config, print the effective one
//!                                                      and `warning:` lines (--strict: exit 1)
//! tokengate explain --config FILE [--path P] [--method M] [--jwks FILE] [TOKEN | -]
//!                                                      the proxy's verdict on a token, and why
//! tokengate dev [--listen ADDR] [--admin ADDR]         local issuer + echo upstream + proxy
//! tokengate identity-env --config FILE                 print IDENTITY_ENDPOINT/IDENTITY_HEADER
//! ```
//! A config with `[auth]` runs the callee side, one with `[identity]` the caller side; one
//! process may run both.
//! Exit codes: 0 clean shutdown; 1 `check` found errors (or warnings with `--strict`), `explain`
//! says deny, or the proxy failed at run time; 64 bad command line or bad config at start.
//!
//! The command line is clap's derive API (the Rust convention; it gives every subcommand its
//! `--help` and keeps the growing CLI declarative); clap's own exit code 2 for a bad command line
//! is mapped to 64 (`EX_USAGE`), as before. Readiness goes to systemd through the `sd-notify`
//! crate, which also handles abstract-namespace sockets and the `MONOTONIC_USEC` that systemd
//! wants with `RELOADING=1`.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use sd_notify::NotifyState;

use tokengate::{Config, SidecarConfig};

const AFTER_HELP: &str =
    "A config with [auth] runs the callee side (validate incoming tokens), one \
with [identity] the caller side (get tokens for apps and outgoing calls); one process may run \
both. identity-env prints the exports that point azure-identity and MSAL at the caller side's \
identity endpoint: eval \"$(tokengate identity-env --config FILE)\".

check prints the effective config and `warning:` lines for settings \
that will not work as meant; exit 0 (1 with --strict when there are warnings). explain prints \
the token's header and claims (never the signature), which keys verify it, and the proxy's \
verdict for that path (default /) and method (default GET): `allow` (exit 0) or `deny <reason> \
(<status>)` (exit 1). The token is read from stdin when it is `-` or absent; keys are fetched \
like the proxy does unless --jwks gives a JWKS file.

The config file defaults to $TOKENGATE_CONFIG. Any key can be overridden with \
TOKENGATE_<SECTION>__<KEY>=value (e.g. TOKENGATE_UPSTREAM__URL=http://127.0.0.1:3000). Logs: \
--log-format or $TOKENGATE_LOG_FORMAT (json|text; default json unless stderr is a terminal), \
level from $TOKENGATE_LOG (default info).

Exit codes: 0 clean shutdown; 1 check found errors (or warnings with --strict), explain says \
deny, or the proxy failed at run time; 64 bad command line or bad config at start.";

const EX_USAGE: u8 = 64;

/// An authenticating reverse proxy for Entra ID access tokens (App Service EasyAuth, anywhere).
#[derive(Parser)]
#[command(name = "tokengate", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The config file.
    #[arg(
        short,
        long,
        global = true,
        env = "TOKENGATE_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
    /// Log format (default: json unless stderr is a terminal).
    #[arg(long, global = true, env = "TOKENGATE_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default when no command is given).
    Run,
    /// Validate a config and print the effective settings and lint warnings.
    Check {
        /// Exit 1 when there are warnings.
        #[arg(long)]
        strict: bool,
    },
    /// The proxy's verdict on a token for a request, and why.
    Explain {
        /// The request path.
        #[arg(long, default_value = "/")]
        path: String,
        /// The request method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// A JWKS file to use instead of fetching keys like the proxy does.
        #[arg(long, value_name = "FILE")]
        jwks: Option<PathBuf>,
        /// The token, or `-` (the default) to read it from stdin.
        token: Option<String>,
    },
    /// Print `export IDENTITY_ENDPOINT=... IDENTITY_HEADER=...` for the caller side's identity
    /// endpoint (creating the secret file if missing).
    IdentityEnv,
    /// A local issuer, echo upstream and proxy in one process, with ready-to-run curl lines.
    Dev {
        /// The proxy's public address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The proxy's admin address.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: SocketAddr,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(EX_USAGE),
            };
        }
    };
    let log_format = cli.log_format;
    let need_config = |what: &str| {
        cli.config.clone().ok_or_else(|| {
            eprintln!("tokengate: {what}\n\nrun `tokengate --help` for usage");
            ExitCode::from(EX_USAGE)
        })
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Check { strict } => {
            let config = match need_config("check needs --config FILE") {
                Ok(c) => c,
                Err(code) => return code,
            };
            check(&config, strict)
        }
        Command::Explain {
            path,
            method,
            jwks,
            token,
        } => {
            let config = match need_config("explain needs --config FILE") {
                Ok(c) => c,
                Err(code) => return code,
            };
            let request = tokengate::explain::Request {
                path,
                method,
                jwks,
                token: token.unwrap_or_else(|| "-".into()),
            };
            explain(&config, request)
        }
        Command::IdentityEnv => {
            let config = match need_config("identity-env needs --config FILE") {
                Ok(c) => c,
                Err(code) => return code,
            };
            identity_env(&config)
        }
        Command::Run => {
            let path = match need_config("no config: pass --config FILE or set TOKENGATE_CONFIG") {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging(log_format);
            let config = match SidecarConfig::load(&path) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "invalid config");
                    eprintln!("tokengate: invalid config: {e}");
                    return ExitCode::from(EX_USAGE);
                }
            };
            for w in config.callee.iter().flat_map(tokengate::config::lint::lint) {
                tracing::warn!(lint = w.lint, "config: {}", w.message);
            }
            for w in config.warnings() {
                tracing::warn!("config: {w}");
            }
            runtime().block_on(run(path, config))
        }
        Command::Dev { listen, admin } => {
            init_logging(Some(log_format.unwrap_or(LogFormat::Text)));
            match runtime().block_on(tokengate::dev::run(listen, admin)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tokengate dev: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// `tokengate check`: exit 0 valid, 1 invalid (or warnings with `--strict`).
fn check(config: &std::path::Path, strict: bool) -> ExitCode {
    match SidecarConfig::load(config) {
        Ok(c) => {
            // The listener's certificate and key are read at start: a bad pair is a bad config.
            if let Some(files) = c
                .callee
                .as_ref()
                .and_then(|c| c.startup.listen_tls.as_ref())
            {
                if let Err(e) = tokengate::net::tls::Acceptor::load(files.clone()) {
                    eprintln!("tokengate: invalid config: {e}");
                    return ExitCode::from(1);
                }
            }
            // The caller side's warnings first: they are about exposure, not policy.
            for w in c.warnings() {
                println!("warning: {w}");
            }
            println!("{}: OK\n\n{}", config.display(), c.summary());
            let warnings: Vec<_> = c
                .callee
                .iter()
                .flat_map(tokengate::config::lint::lint)
                .collect();
            for w in &warnings {
                println!("{w}");
            }
            let count = warnings.len() + c.warnings().len();
            if strict && count > 0 {
                eprintln!("tokengate: {count} warning(s), failing because of --strict");
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tokengate: invalid config: {e}");
            ExitCode::from(1)
        }
    }
}

/// `tokengate identity-env`: exit 0 printed, 64 bad config or no `[identity_endpoint]`, 1 the
/// secret file cannot be read or created.
fn identity_env(config: &std::path::Path) -> ExitCode {
    let endpoint = match SidecarConfig::load(config) {
        Ok(c) => c.caller.and_then(|c| c.endpoint),
        Err(e) => {
            eprintln!("tokengate: invalid config: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let Some(endpoint) = endpoint else {
        eprintln!(
            "tokengate: {}: no [identity_endpoint] section: there is no endpoint to point apps at",
            config.display()
        );
        return ExitCode::from(EX_USAGE);
    };
    match tokengate::caller::identity_env(&endpoint) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tokengate: {e}");
            ExitCode::from(1)
        }
    }
}

/// `tokengate explain`: exit 0 for allow, 1 for deny, 64 for bad input.
fn explain(config: &std::path::Path, mut request: tokengate::explain::Request) -> ExitCode {
    let c = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tokengate: invalid config: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    if request.token == "-" {
        let mut t = String::new();
        if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut t) {
            eprintln!("tokengate explain: reading the token from stdin: {e}");
            return ExitCode::from(EX_USAGE);
        }
        request.token = t;
    }
    tokengate::install_crypto_providers();
    match runtime().block_on(tokengate::explain::explain(c, &request)) {
        Ok(e) => {
            print!("{}", e.text);
            if e.allow {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("tokengate explain: {e}");
            ExitCode::from(EX_USAGE)
        }
    }
}

fn init_logging(format: Option<LogFormat>) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOKENGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match format {
        Some(f) => f == LogFormat::Json,
        None => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    } else {
        builder.init();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn run(path: PathBuf, config: SidecarConfig) -> ExitCode {
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers first: a SIGTERM that arrives right after READY=1 must drain, not kill.
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    );
    let (mut term, mut int, mut hup) = match handlers {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => {
            tracing::error!("cannot install signal handlers");
            return ExitCode::from(1);
        }
    };
    let running = match tokengate::start_sidecar(config).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("tokengate: {e}");
            // InvalidInput is a bad TLS certificate or key file: a config error like the others.
            if e.kind() == std::io::ErrorKind::InvalidInput {
                return ExitCode::from(EX_USAGE);
            }
            return ExitCode::from(1);
        }
    };
    notify_systemd(&[NotifyState::Ready]);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                // systemd wants the reload's start time with RELOADING=1.
                match NotifyState::monotonic_usec_now() {
                    Ok(now) => notify_systemd(&[NotifyState::Reloading, now]),
                    Err(_) => notify_systemd(&[NotifyState::Reloading]),
                }
                match SidecarConfig::load(&path).and_then(|c| running.reload_sidecar(c).map_err(tokengate::config::ConfigError::from)) {
                    Ok(()) => tracing::info!(config = %path.display(), "config reloaded"),
                    Err(e) => tracing::error!(error = %e, "config reload refused; keeping the current config"),
                }
                // Certificate files are re-read on every SIGHUP, whatever became of the config.
                match running.reload_tls() {
                    Ok(true) => tracing::info!("TLS certificate reloaded"),
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, "TLS reload failed; keeping the current certificate"),
                }
                notify_systemd(&[NotifyState::Ready]);
            }
        }
    }
    tracing::info!("shutting down: draining in-flight requests");
    notify_systemd(&[NotifyState::Stopping]);
    running.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// sd_notify(3): tells systemd (if it started us with `$NOTIFY_SOCKET`) about our state.
/// Best effort: a failure is logged, never fatal.
fn notify_systemd(state: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(state) {
        tracing::warn!(%error, "sd_notify");
    }
}
