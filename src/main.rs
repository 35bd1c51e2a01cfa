//! The `tally` command: serve (default) or administer apps.

use clap::{Parser, Subcommand};
use std::path::Path;
use std::sync::Arc;
use tally_config::Config;
use tally_redis::embedded::{EmbeddedOptions, EmbeddedRedis};
use tally_service::clock::SystemClock;

/// Every Tally binary allocates with mimalloc: the write path makes many small,
/// short-lived allocations (field names, keys, JSON), and glibc's malloc/free took about
/// a fifth of the CPU in the profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tally",
    version,
    about = "Countly-compatible analytics on pre-aggregated Redis counters"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default). Configuration comes from the environment (README.md).
    Serve,
    /// Manage apps.
    Apps {
        #[command(subcommand)]
        command: AppsCommand,
    },
}

#[derive(Subcommand)]
enum AppsCommand {
    /// Create an app and print its keys.
    Create {
        #[arg(long)]
        name: String,
        /// IANA timezone the app's days are counted in.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// Let reads through with the write key alone (as the original Countly read API).
        #[arg(long)]
        public_read: bool,
        /// Require checksums on /i with this salt.
        #[arg(long)]
        salt: Option<String>,
    },
    /// List app ids.
    List,
}

/// Where a running embedded Redis leaves its address, so `tally apps` finds it.
const URL_FILE: &str = "redis.url";

fn main() {
    let cli = Cli::parse();
    let cfg = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tally: {e}");
            std::process::exit(2);
        }
    };
    tally_service::init_logging(cfg.log_json);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cfg),
        Command::Apps { command } => apps(cfg, command),
    };
    if let Err(e) = result {
        eprintln!("tally: {e}");
        std::process::exit(1);
    }
}

type Res = Result<(), Box<dyn std::error::Error>>;

fn serve(cfg: Config) -> Res {
    let mut embedded = None;
    let url = match cfg.external_redis() {
        Some(u) => u,
        None => {
            let redis = EmbeddedRedis::start(embedded_options(&cfg))?;
            tracing::info!(port = redis.port, dir = %cfg.data_dir.display(), "started embedded redis-server (AOF on)");
            std::fs::write(cfg.data_dir.join(URL_FILE), redis.url())?;
            let url = redis.url();
            embedded = Some(redis);
            url
        }
    };
    let result = actix_web::rt::System::new().block_on(async {
        let running = tally::start(&cfg, &url, Arc::new(SystemClock))?;
        tracing::info!(addr = %running.addr, "tally listening");
        running.run().await?;
        Ok::<(), Box<dyn std::error::Error>>(())
    });
    if let Some(mut redis) = embedded {
        let _ = std::fs::remove_file(cfg.data_dir.join(URL_FILE));
        redis.shutdown();
        tracing::info!("embedded redis-server stopped");
    }
    result
}

fn embedded_options(cfg: &Config) -> EmbeddedOptions {
    let mut o = EmbeddedOptions::new(&cfg.data_dir);
    o.aof_rewrite_min_mb = cfg.aof_rewrite_min_mb;
    o
}

/// The Redis to administer: `REDIS_URL`, else a running embedded one, else a temporary
/// embedded one on the same data directory.
fn admin_redis(
    cfg: &Config,
) -> Result<(String, Option<EmbeddedRedis>), Box<dyn std::error::Error>> {
    if let Some(u) = cfg.external_redis() {
        return Ok((u, None));
    }
    if let Ok(u) = std::fs::read_to_string(Path::new(&cfg.data_dir).join(URL_FILE)) {
        let u = u.trim().to_string();
        if tally_redis::embedded::ping(&u).is_ok() {
            return Ok((u, None));
        }
    }
    let r = EmbeddedRedis::start(embedded_options(cfg))?;
    Ok((r.url(), Some(r)))
}

fn apps(cfg: Config, cmd: AppsCommand) -> Res {
    let (url, mut temp) = admin_redis(&cfg)?;
    let out = actix_web::rt::System::new().block_on(async {
        let pool = tally_redis::pool(&cfg.redis(&url))?;
        match cmd {
            AppsCommand::Create {
                name,
                timezone,
                public_read,
                salt,
            } => {
                let new =
                    tally_aggregator::project::new_app(&name, Some(&timezone), public_read, salt)?;
                let now = chrono_now();
                let app = tally_model::apps::create(&pool, new, now).await?;
                println!(
                    "{}",
                    serde_json::json!({
                        "project": app.id.as_str(),
                        "name": app.name,
                        "timezone": app.timezone.name(),
                        "write_key": app.write_key,
                        "read_key": app.read_key,
                        "master_key": app.master_key,
                    })
                );
            }
            AppsCommand::List => {
                for id in tally_model::apps::list(&pool).await? {
                    println!("{id}");
                }
            }
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    });
    if let Some(r) = temp.as_mut() {
        r.shutdown();
    }
    out
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
