//! The command line: `serve` (default), `migrate`, `config check`, `keys …`, `policy check`, `route`, `replay`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ProcessEnv};
use crate::store::Store;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "A cost-optimising reverse proxy for LLM APIs"
)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "SWITCHYARD_CONFIG",
        default_value = "examples/config.yaml"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the proxy (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Spend report: `spend --by team|user|model|day --since 30d [--format table|json|csv]`.
    Spend(crate::ledger::report::SpendArgs),
    /// Team policy commands.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Show what a team's policy would do with one prompt (no upstream is called).
    Route(crate::policy::commands::RouteArgs),
    /// Replay a request log through a team's policy: projected spend, model mix, changed models.
    Replay(crate::policy::commands::ReplayArgs),
    /// Score prompts: JSONL on stdin (`id` + `prompt` or `messages`) → JSONL with difficulty and task.
    Score(crate::classify::commands::ScoreArgs),
    /// Measure the router on outcome data: APGR, CPT(50%), CPT(80%), saved@95, curve as CSV and SVG.
    Eval(crate::classify::commands::EvalArgs),
    /// Rebuild the classifier's heads from outcome data, with a fixed seed.
    Train(crate::classify::commands::TrainArgs),
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Validate every policy file against the catalogue; exits non-zero on any problem.
    Check(crate::policy::commands::PolicyCheckArgs),
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file and report every problem; exits non-zero on any.
    Check {
        /// The file to check (defaults to --config).
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key; it is printed once and only its hash is stored.
    Create(CreateKeyArgs),
    /// List keys (prefixes only).
    List {
        #[arg(long)]
        team: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id or prefix.
    Revoke { id: String },
}

#[derive(Args)]
pub struct CreateKeyArgs {
    #[arg(long)]
    pub user: String,
    #[arg(long)]
    pub team: String,
    #[arg(long)]
    pub label: Option<String>,
}

pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    Config::load(path, &ProcessEnv).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn open_store(path: &Path) -> anyhow::Result<Store> {
    let config = load_config(path)?;
    Store::open(&config.database_url).await.with_context(|| {
        format!(
            "cannot open the database at {}",
            crate::config::redact_url(&config.database_url)
        )
    })
}

pub fn init_logging(config: Option<&Config>) {
    if let Err(e) = crate::logging::init(config.map(|c| &c.log)) {
        eprintln!("cannot initialise logging: {e}");
    }
}

pub async fn main(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let config = load_config(&cli.config)?;
            // Held until `serve` returns: dropping it writes out the log lines still queued.
            let _log_writer = match crate::logging::init_server(&config.log) {
                Ok(guard) => Some(guard),
                Err(e) => {
                    eprintln!("cannot initialise logging: {e}");
                    None
                }
            };
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            crate::server::run(config, listener, crate::server::shutdown_signal()).await
        }
        Command::Migrate => {
            init_logging(None);
            let store = open_store(&cli.config).await?;
            println!("migrations applied ({})", store.backend());
            Ok(())
        }
        Command::Config(ConfigCommand::Check { file }) => {
            let path = file.unwrap_or(cli.config);
            let config = load_config(&path)?;
            println!(
                "{}: ok ({} deployments, {} models, prices as of {})",
                path.display(),
                config.deployments.len(),
                config.catalogue.models.len(),
                config.catalogue.prices_as_of.as_deref().unwrap_or("unknown")
            );
            for d in config.deployments.values().filter(|d| d.missing_credentials()) {
                println!(
                    "warning: deployment {} needs {} to be set",
                    d.name,
                    d.api_key_env.as_deref().unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::Policy(PolicyCommand::Check(args)) => {
            init_logging(None);
            let config = load_config(&cli.config)?;
            exit_unless(crate::policy::commands::policy_check(&config, &args)?)
        }
        Command::Route(args) => {
            let (config, classifier) = dry_run(&cli.config)?;
            exit_unless(crate::policy::commands::route(
                &config,
                &args,
                signals(&classifier),
            )?)
        }
        Command::Replay(args) => {
            let (config, classifier) = dry_run(&cli.config)?;
            exit_unless(crate::policy::commands::replay(
                &config,
                &args,
                signals(&classifier),
            )?)
        }
        Command::Keys(cmd) => {
            init_logging(None);
            let store = open_store(&cli.config).await?;
            keys(&store, cmd).await
        }
        Command::Score(args) => crate::classify::commands::score(&args),
        Command::Eval(args) => crate::classify::commands::eval(&args),
        Command::Train(args) => crate::classify::commands::train(&args),
        Command::Spend(args) => {
            init_logging(None);
            let store = open_store(&cli.config).await?;
            print!("{}", crate::ledger::report::run(&store, &args).await?);
            Ok(())
        }
    }
}

/// Commands that print their own findings report failure by exit status alone.
fn exit_unless(ok: bool) -> anyhow::Result<()> {
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

/// The config and, when the config enables it and its files are there, the classifier for the `route` and
/// `replay` dry runs (they say which difficulty source they used).
fn dry_run(path: &Path) -> anyhow::Result<(Config, Option<crate::classify::Classifier>)> {
    init_logging(None);
    let config = load_config(path)?;
    let classifier = if config.classifier.enabled {
        crate::classify::Classifier::load(&config.classifier)
            .inspect_err(|e| {
                eprintln!("warning: classifier unavailable ({e}); using the heuristic difficulty")
            })
            .ok()
    } else {
        None
    };
    Ok((config, classifier))
}

fn signals(
    classifier: &Option<crate::classify::Classifier>,
) -> Option<&dyn crate::policy::commands::SignalSource> {
    classifier
        .as_ref()
        .map(|c| c as &dyn crate::policy::commands::SignalSource)
}

async fn keys(store: &Store, cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Create(args) => {
            let new = store
                .create_key(&args.user, &args.team, args.label.as_deref())
                .await?;
            eprintln!(
                "Created key {} for user {} in team {}.",
                new.record.id, new.record.user, new.record.team
            );
            eprintln!("Store it now: it is shown only once.");
            println!("{}", new.plaintext);
        }
        KeysCommand::List { team, json } => {
            let keys = store.list_keys(team.as_deref()).await?;
            if json {
                let rows: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        serde_json::json!({"id": k.id, "prefix": k.prefix, "user": k.user, "team": k.team,
                            "label": k.label, "created_at": k.created_at, "revoked_at": k.revoked_at})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<38} {:<12} {:<20} {:<16} {:<8}",
                    "ID", "PREFIX", "USER", "TEAM", "STATUS"
                );
                for k in keys {
                    let status = if k.is_active() { "active" } else { "revoked" };
                    println!(
                        "{:<38} {:<12} {:<20} {:<16} {:<8}",
                        k.id, k.prefix, k.user, k.team, status
                    );
                }
            }
        }
        KeysCommand::Revoke { id } => {
            let key = store.revoke_key(&id).await?;
            println!(
                "revoked {} ({}, user {}, team {})",
                key.id, key.prefix, key.user, key.team
            );
        }
    }
    Ok(())
}
