//! How span fields are kept for log lines. The log layer formats a span's
//! fields once, when the span is made (and again for each `record`), and
//! copies the text into every line inside the span. Only `request_id` and
//! `trace_id` are meant for log lines: the `otel.*` fields (span name and
//! kind, for the trace) are left out of both formats.

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, FormattedFields};

/// The default text field format minus the `otel.*` fields, which would open
/// every log line of a request.
pub(crate) struct TextFields;

impl<'w> FormatFields<'w> for TextFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> std::fmt::Result {
        let mut v = TextVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

struct TextVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: std::fmt::Result,
}

impl TextVisitor<'_> {
    fn write(&mut self, field: &Field, value: std::fmt::Arguments<'_>) {
        if self.result.is_err() || field.name().starts_with("otel.") {
            return;
        }
        let sep = if self.first { "" } else { " " };
        self.first = false;
        self.result = if field.name() == "message" {
            write!(self.writer, "{sep}{value}")
        } else {
            write!(self.writer, "{sep}{}={value}", field.name())
        };
    }
}

impl Visit for TextVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.write(field, format_args!("{value}"));
        } else {
            self.write(field, format_args!("{value:?}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.write(field, format_args!("{value:?}"));
    }
}

/// Span fields as a JSON object, for the JSON log format (which reads them
/// back as an object into each line's `spans` list).
///
/// Written straight to the text, where tracing-subscriber's own `JsonFields`
/// builds a map of `serde_json::Value`s, and a `record` (the `trace_id`
/// every request span gets) appends to the object instead of parsing it
/// and writing it again: together they were about 5% of the instructions of
/// a proxied request.
pub(crate) struct JsonSpanFields;

impl<'w> FormatFields<'w> for JsonSpanFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        writer.write_char('{')?;
        let mut v = JsonVisitor {
            writer: &mut writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result?;
        writer.write_char('}')
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> std::fmt::Result {
        if !current.fields.ends_with('}') {
            // Empty (nothing formatted yet), or not ours: start over.
            current.fields.clear();
            return self.format_fields(current.as_writer(), fields);
        }
        current.fields.pop();
        let first = current.fields.ends_with('{');
        let mut writer = current.as_writer();
        let mut v = JsonVisitor {
            writer: &mut writer,
            first,
            result: Ok(()),
        };
        fields.record(&mut v);
        let result = v.result;
        current.fields.push('}');
        result
    }
}

struct JsonVisitor<'a, 'w> {
    writer: &'a mut Writer<'w>,
    first: bool,
    result: std::fmt::Result,
}

impl JsonVisitor<'_, '_> {
    /// `"name":` and the value `write` gives, unless it is an `otel.*` field.
    fn entry(&mut self, field: &Field, write: impl FnOnce(&mut Writer<'_>) -> std::fmt::Result) {
        if self.result.is_err() || field.name().starts_with("otel.") {
            return;
        }
        let sep = if self.first { "" } else { "," };
        self.first = false;
        self.result = write!(self.writer, "{sep}\"")
            .and_then(|()| write_escaped(self.writer, field.name()))
            .and_then(|()| self.writer.write_str("\":"))
            .and_then(|()| write(self.writer));
    }
}

impl Visit for JsonVisitor<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |w| {
            w.write_char('"')?;
            write_escaped(w, value)?;
            w.write_char('"')
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |w| write!(w, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |w| write!(w, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |w| write!(w, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: those are written as strings.
        if value.is_finite() {
            self.entry(field, |w| write!(w, "{value}"));
        } else {
            self.entry(field, |w| write!(w, "\"{value}\""));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        self.record_str(field, &text);
    }
}

/// `s` as the inside of a JSON string.
fn write_escaped(w: &mut Writer<'_>, s: &str) -> std::fmt::Result {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 => {
                w.write_str(&s[start..i])?;
                write!(w, "\\u{:04x}", c as u32)?;
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        w.write_str(&s[start..i])?;
        w.write_str(escape)?;
        start = i + 1;
    }
    w.write_str(&s[start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn json_lines(f: impl FnOnce()) -> Vec<serde_json::Value> {
        let buf = Buf::default();
        let out = buf.clone();
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .fmt_fields(JsonSpanFields)
            .with_writer(move || out.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn span_fields_are_a_json_object_and_records_append() {
        let tricky = "quote \" backslash \\ newline \n tab \t bell \u{7} é 👋";
        let lines = json_lines(|| {
            let span = tracing::info_span!(
                "http",
                otel.name = "POST /v1/chat/completions",
                request_id = %"r-1",
                n = 3u64,
                neg = -2i64,
                ok = true,
                ratio = 0.5f64,
                odd = f64::NAN,
                text = tricky,
                trace_id = tracing::field::Empty,
                empty = tracing::field::Empty,
            );
            span.record("trace_id", "abc");
            span.record("trace_id", "def");
            let _g = span.enter();
            tracing::info!("inside");
            let inner = tracing::info_span!("inner");
            inner.record("late", 1);
            let _g = inner.enter();
            tracing::info!("deeper");
        });
        assert_eq!(lines.len(), 2);
        let outer = &lines[0]["spans"][0];
        assert_eq!(outer["request_id"], "r-1");
        assert_eq!(outer["n"], 3);
        assert_eq!(outer["neg"], -2);
        assert_eq!(outer["ok"], true);
        assert_eq!(outer["ratio"], 0.5);
        assert_eq!(outer["odd"], "NaN");
        assert_eq!(outer["text"], tricky);
        // The later record wins, as with tracing-subscriber's own format.
        assert_eq!(outer["trace_id"], "def");
        assert!(outer.get("otel.name").is_none());
        assert_eq!(outer["name"], "http");
        assert_eq!(lines[1]["spans"][1]["name"], "inner");
        assert!(lines[1]["spans"][1].get("late").is_none(), "not declared");
    }

    #[test]
    fn a_span_with_no_fields_then_a_record() {
        let lines = json_lines(|| {
            let span =
                tracing::info_span!("s", otel.kind = "server", trace_id = tracing::field::Empty);
            span.record("trace_id", "t-1");
            let _g = span.enter();
            tracing::info!("x");
        });
        assert_eq!(lines[0]["spans"][0]["trace_id"], "t-1");
    }
}
