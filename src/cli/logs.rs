//! The log of `serve`: tracing's formatter, writing each line through the
//! scrubber of the current secrets (SPEC §3), so that no secret value and no
//! URL user info reaches the log whatever a message carries.
//!
//! What an operator must act on goes to stderr as it happens (SPEC §6: a
//! successful request writes nothing). With `--access-log`, the one line
//! per webhook request (target [`ACCESS_TARGET`]) goes through a buffered
//! writer on a thread of its own (tracing-appender's non-blocking writer),
//! so the request path only hands the line over; when that writer falls
//! 128k lines behind, lines are dropped rather than slowing requests down.

use super::LogFormat;
use hookflow_model::scrub::{Scrubber, SecretSet};
use hookflow_trigger::ACCESS_TARGET;
use std::borrow::Cow;
use std::io::Write;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// A formatting layer writing to `writer` in `format`.
fn layer<W>(format: LogFormat, ansi: bool, writer: W) -> BoxedLayer
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Text => base.boxed(),
        LogFormat::Json => base.json().flatten_event(true).boxed(),
    }
}

/// Sets up logging to stderr, every line scrubbed with `secrets` as they are
/// when the line is written (they grow as workflows load). With
/// `access_log`, also the access lines, off the request path; the returned
/// guard writes what is still buffered when dropped.
pub fn init(format: LogFormat, secrets: SecretSet, access_log: bool) -> Option<WorkerGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let main = layer(
        format,
        ansi,
        ScrubbedStderr {
            secrets: secrets.clone(),
        },
    )
    .with_filter(filter_fn(|m| m.target() != ACCESS_TARGET))
    .with_filter(filter);
    let mut layers: Vec<BoxedLayer> = vec![main.boxed()];
    let guard = if access_log {
        let (writer, guard) = NonBlockingBuilder::default()
            .lossy(true)
            .thread_name("hookflow-access-log")
            .finish(ScrubbingWriter {
                secrets,
                out: std::io::BufWriter::new(std::io::stderr()),
            });
        let access = layer(format, ansi, writer).with_filter(filter_fn(|m| {
            m.target() == ACCESS_TARGET && *m.level() <= tracing::Level::INFO
        }));
        layers.push(access.boxed());
        Some(guard)
    } else {
        None
    };
    tracing_subscriber::registry().with(layers).init();
    guard
}

/// The access log's writer (on the non-blocking writer's thread): each
/// message is one formatted line, scrubbed before it is buffered.
struct ScrubbingWriter {
    secrets: SecretSet,
    out: std::io::BufWriter<std::io::Stderr>,
}

impl Write for ScrubbingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let clean = clean_line(&text, &self.secrets.current());
        self.out.write_all(clean.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Makes one [`LineWriter`] per log event.
struct ScrubbedStderr {
    secrets: SecretSet,
}

impl<'a> MakeWriter<'a> for ScrubbedStderr {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            line: Vec::new(),
            secrets: &self.secrets,
        }
    }
}

/// Collects one formatted event and writes it, scrubbed, when dropped (the
/// formatter writes an event with one `write_all` and then drops its writer).
struct LineWriter<'a> {
    line: Vec<u8>,
    secrets: &'a SecretSet,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.line);
        let clean = clean_line(&text, &self.secrets.current());
        // Nowhere to report a failed log write.
        let _ = std::io::stderr().lock().write_all(clean.as_bytes());
    }
}

/// One log line as written: secrets and URL user info scrubbed, and line
/// breaks inside it escaped (fields are escaped where they are logged; this
/// keeps one event on one line whatever a message carries).
fn clean_line<'t>(text: &'t str, scrubber: &Scrubber) -> Cow<'t, str> {
    let scrubbed = scrubber.str(text);
    let body = scrubbed.strip_suffix('\n').unwrap_or(&scrubbed);
    if !body.contains(['\n', '\r']) {
        return scrubbed;
    }
    let mut out = body.replace('\r', "\\r").replace('\n', "\\n");
    if scrubbed.ends_with('\n') {
        out.push('\n');
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_scrubbed_and_stay_one_line() {
        let s = Scrubber::new(["SUPERSECRET123"]);
        assert_eq!(
            clean_line(
                "WARN Node failed. error=\"GET https://u:p@h/?t=SUPERSECRET123\"\n",
                &s
            ),
            "WARN Node failed. error=\"GET https://[redacted]@h/?t=[redacted]\"\n"
        );
        assert_eq!(
            clean_line("INFO a\nINFO forged\r\n", &s),
            "INFO a\\nINFO forged\\r\n"
        );
        assert!(matches!(clean_line("INFO plain\n", &s), Cow::Borrowed(_)));
    }
}
