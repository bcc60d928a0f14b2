//! The log of `serve`: tracing's formatter, writing each line through the
//! scrubber of the current secrets (SPEC §3), so that no secret value and no
//! URL user info reaches the log whatever a message carries.

use super::LogFormat;
use hookflow_model::scrub::{Scrubber, SecretSet};
use std::borrow::Cow;
use std::io::Write;
use tracing_subscriber::fmt::MakeWriter;

/// Sets up logging to stderr, every line scrubbed with `secrets` as they are
/// when the line is written (they grow as workflows load).
pub fn init(format: LogFormat, secrets: SecretSet) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(ScrubbedStderr { secrets });
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
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
