//! Logging to stderr as text or JSON, with `RUST_LOG` for the level.

/// Logs to stderr, as text or (`TALLY_LOG_FORMAT=json`) JSON; `RUST_LOG` sets the level.
pub fn init_logging(json: bool) {
    let spec = std::env::var(tracing_subscriber::EnvFilter::DEFAULT_ENV).ok();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(log_filter(spec.as_deref()))
        .with_writer(std::io::stderr);
    if json {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// actix-http logs every malformed request line and every connection a client drops at
/// ERROR, from this target. Those are the client's (answered 400, or gone), and one line
/// each would let any client fill the log, so they stay off unless `RUST_LOG` names
/// `actix_http` itself.
const CLIENT_MISTAKES: &str = "actix_http::h1::dispatcher=off";

/// The log filter for `RUST_LOG` (`info` when unset or invalid), with
/// [`CLIENT_MISTAKES`] off.
fn log_filter(spec: Option<&str>) -> tracing_subscriber::EnvFilter {
    let quiet = |base: &str| format!("{base},{CLIENT_MISTAKES}");
    let spec = spec
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    let spec = if spec.contains("actix_http") {
        spec.to_string()
    } else {
        quiet(spec)
    };
    tracing_subscriber::EnvFilter::try_new(spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(quiet("info")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_mistakes_stay_out_of_the_log_unless_asked_for() {
        for spec in [
            None,
            Some(""),
            Some("warn"),
            Some("tally=debug,info"),
            Some("=bad="),
        ] {
            let f = log_filter(spec).to_string();
            assert!(f.contains(CLIENT_MISTAKES), "{spec:?}: {f}");
        }
        let asked = log_filter(Some("warn,actix_http=debug")).to_string();
        assert!(!asked.contains(CLIENT_MISTAKES), "{asked}");
        assert!(log_filter(Some("warn")).to_string().contains("warn"));
    }
}
