//! The `tokengate` command.
//!
//! ```text
//! tokengate [--config FILE] [--log-format json|text]   run the proxy (FILE or $TOKENGATE_CONFIG)
//! tokengate check --config FILE [--strict]             validate a config, print the effective one
//!                                                      and `warning:` lines (--strict: exit 1)
//! tokengate explain --config FILE [--path P] [--method M] [--jwks FILE] [TOKEN | -]
//!                                                      the proxy's verdict on a token, and why
//! tokengate dev [--listen ADDR] [--admin ADDR]         local issuer + echo upstream + proxy
//! ```
//! Exit codes: 0 clean shutdown; 1 `check` found errors (or warnings with `--strict`), `explain`
//! says deny, or the proxy failed at run time; 64 bad command line or bad config at start.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use tokengate::Config;

const USAGE: &str = "usage:
  tokengate [--config FILE] [--log-format json|text]
  tokengate check --config FILE [--strict]
  tokengate explain --config FILE [--path P] [--method M] [--jwks FILE] [TOKEN | -]
  tokengate dev [--listen ADDR] [--admin ADDR]

check prints the effective config and `warning:` lines for settings that will not work as
meant; exit 0 (1 with --strict when there are warnings). explain prints the token's header and
claims (never the signature), which keys verify it, and the proxy's verdict for that path
(default /) and method (default GET): `allow` (exit 0) or `deny <reason> (<status>)` (exit 1).
The token is read from stdin when it is `-` or absent; keys are fetched like the proxy does
unless --jwks gives a JWKS file.

The config file defaults to $TOKENGATE_CONFIG. Any key can be overridden with
TOKENGATE_<SECTION>__<KEY>=value (e.g. TOKENGATE_UPSTREAM__URL=http://127.0.0.1:3000).
Logs: --log-format or $TOKENGATE_LOG_FORMAT (json|text; default json unless stderr is a
terminal), level from $TOKENGATE_LOG (default info).";

const EX_USAGE: u8 = 64;

enum Command {
    Run {
        config: PathBuf,
    },
    Check {
        config: PathBuf,
        strict: bool,
    },
    Explain {
        config: PathBuf,
        request: tokengate::explain::Request,
    },
    Dev {
        listen: SocketAddr,
        admin: SocketAddr,
    },
    Help,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, log_format) = match parse_args(&args) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("tokengate: {msg}\n\n{USAGE}");
            return ExitCode::from(EX_USAGE);
        }
    };
    match command {
        Command::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Check { config, strict } => match Config::load(&config) {
            Ok(c) => {
                // The listener's certificate and key are read at start: a bad pair is a bad config.
                if let Some(files) = &c.startup.listen_tls {
                    if let Err(e) = tokengate::net::tls::Acceptor::load(files.clone()) {
                        eprintln!("tokengate: invalid config: {e}");
                        return ExitCode::from(1);
                    }
                }
                println!("{}: OK\n\n{}", config.display(), c.summary());
                let warnings = tokengate::config::lint::lint(&c);
                for w in &warnings {
                    println!("{w}");
                }
                if strict && !warnings.is_empty() {
                    eprintln!(
                        "tokengate: {} warning(s), failing because of --strict",
                        warnings.len()
                    );
                    return ExitCode::from(1);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tokengate: invalid config: {e}");
                ExitCode::from(1)
            }
        },
        Command::Explain { config, request } => explain(&config, request),
        Command::Run { config: path } => {
            init_logging(log_format.as_deref());
            let config = match Config::load(&path) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "invalid config");
                    eprintln!("tokengate: invalid config: {e}");
                    return ExitCode::from(EX_USAGE);
                }
            };
            for w in tokengate::config::lint::lint(&config) {
                tracing::warn!(lint = w.lint, "config: {}", w.message);
            }
            runtime().block_on(run(path, config))
        }
        Command::Dev { listen, admin } => {
            init_logging(Some(log_format.as_deref().unwrap_or("text")));
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

fn parse_args(args: &[String]) -> Result<(Command, Option<String>), String> {
    let mut it = args.iter().peekable();
    let sub = match it.peek().map(|s| s.as_str()) {
        Some("check") | Some("dev") | Some("run") | Some("explain") => it.next().cloned(),
        _ => None,
    };
    let mut strict = false;
    let mut path = "/".to_string();
    let mut method = "GET".to_string();
    let mut jwks: Option<PathBuf> = None;
    let mut token: Option<String> = None;
    let mut config: Option<PathBuf> = None;
    let mut log_format = std::env::var("TOKENGATE_LOG_FORMAT").ok();
    let mut listen: SocketAddr = "127.0.0.1:8080".parse().expect("literal");
    let mut admin: SocketAddr = "127.0.0.1:9090".parse().expect("literal");
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok((Command::Help, None)),
            "-c" | "--config" => config = Some(value("--config")?.into()),
            "--log-format" => log_format = Some(value("--log-format")?),
            "--strict" if sub.as_deref() == Some("check") => strict = true,
            "--path" if sub.as_deref() == Some("explain") => path = value("--path")?,
            "--method" if sub.as_deref() == Some("explain") => method = value("--method")?,
            "--jwks" if sub.as_deref() == Some("explain") => jwks = Some(value("--jwks")?.into()),
            t if sub.as_deref() == Some("explain")
                && token.is_none()
                && (t == "-" || !t.starts_with('-')) =>
            {
                token = Some(t.to_string())
            }
            "--listen" => {
                listen = value("--listen")?
                    .parse()
                    .map_err(|e| format!("--listen: {e}"))?
            }
            "--admin" => {
                admin = value("--admin")?
                    .parse()
                    .map_err(|e| format!("--admin: {e}"))?
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if let Some(f) = &log_format {
        if f != "json" && f != "text" {
            return Err(format!("--log-format must be json or text, not {f:?}"));
        }
    }
    let config = config.or_else(|| std::env::var_os("TOKENGATE_CONFIG").map(PathBuf::from));
    let command = match sub.as_deref() {
        Some("dev") => Command::Dev { listen, admin },
        Some("check") => Command::Check {
            config: config.ok_or("check needs --config FILE")?,
            strict,
        },
        Some("explain") => Command::Explain {
            config: config.ok_or("explain needs --config FILE")?,
            request: tokengate::explain::Request {
                path,
                method,
                jwks,
                token: token.unwrap_or_else(|| "-".into()),
            },
        },
        _ => Command::Run {
            config: config.ok_or("no config: pass --config FILE or set TOKENGATE_CONFIG")?,
        },
    };
    Ok((command, log_format))
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

fn init_logging(format: Option<&str>) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOKENGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match format {
        Some(f) => f == "json",
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

async fn run(path: PathBuf, config: Config) -> ExitCode {
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
    let running = match tokengate::start(config).await {
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
    notify_systemd("READY=1");
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                notify_systemd("RELOADING=1");
                match Config::load(&path).and_then(|c| running.reload(c).map_err(tokengate::config::ConfigError::from)) {
                    Ok(()) => tracing::info!(config = %path.display(), "config reloaded"),
                    Err(e) => tracing::error!(error = %e, "config reload refused; keeping the current config"),
                }
                // Certificate files are re-read on every SIGHUP, whatever became of the config.
                match running.reload_tls() {
                    Ok(true) => tracing::info!("TLS certificate reloaded"),
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, "TLS reload failed; keeping the current certificate"),
                }
                notify_systemd("READY=1");
            }
        }
    }
    tracing::info!("shutting down: draining in-flight requests");
    notify_systemd("STOPPING=1");
    running.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET, if systemd gave us one.
fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let socket = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    let _ = socket.send_to(state.as_bytes(), path);
}
