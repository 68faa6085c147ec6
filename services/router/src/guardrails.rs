//! `guardrails`: content rules run over every chat prompt before it leaves
//! the gateway (chat completions, `/v1/messages`, `/v1/responses`, gRPC).
//! Each rule is a detector (`switchyard_guardrails`: card numbers, SSNs,
//! IBANs, e-mail, phone numbers, secrets, or a custom regex) and an action:
//! `block` answers 400 naming the rule and the detector (never the match),
//! `redact` replaces each match with `[REDACTED:<detector>]`, `log` only
//! records that the rule matched. Rules can be limited to models and teams.
//!
//! Scanned: every text part of every message (system, user, assistant,
//! tool), the arguments of earlier tool calls, and the client's original
//! Responses request that a `responses: native` target would receive.
//!
//! Rules with `applies_to: response` (or `both`) scan answers too: the
//! assistant text and tool-call arguments of a complete answer, and of a
//! stream, where each text (content, reasoning, each tool call's
//! arguments, per choice) goes through one
//! [`StreamRedactor`](switchyard_guardrails::StreamRedactor) per rule, so
//! only the bytes a match could still span are held back. A blocking rule
//! fails a complete answer ([`GatewayError::GuardrailBlockedAnswer`]) and
//! stops a stream with that error where the match would have started.
//! Native Responses pass-through (`native_response` / `native_event`) is
//! not scanned.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use switchyard_config::{Config, GuardrailAction, GuardrailRule, GuardrailScope};
use switchyard_guardrails::{Blocked, Builtin, Scanner, StreamRedactor, redact};
use switchyard_proto::gateway::v1::{
    ChatChunk, ChatResult, ChatSpec, ChoiceDelta, FinishReason, ToolCallDelta, content_part::Part,
};

use crate::core::{ChatStream, StreamItem};
use crate::error::GatewayError;
use crate::spend::Identity;

struct Rule {
    name: String,
    action: GuardrailAction,
    scope: GuardrailScope,
    models: Vec<String>,
    teams: Vec<String>,
    /// Key names.
    keys: Vec<String>,
    /// Shared with the redactors of the streams in flight.
    scanner: Arc<Scanner>,
}

/// The config's rules, compiled; swapped whole on reload.
#[derive(Default)]
pub struct Guardrails {
    rules: Vec<Rule>,
}

/// What the rules did to one request (for its usage and audit record).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// `<action>:<rule>/<detector>*<count>` per redacting or logging rule
    /// that matched.
    pub matched: Vec<String>,
}

fn action_name(a: GuardrailAction) -> &'static str {
    match a {
        GuardrailAction::Block => "block",
        GuardrailAction::Redact => "redact",
        GuardrailAction::Log => "log",
    }
}

impl Guardrails {
    /// The compiled rules. A rule whose pattern does not compile (config
    /// validation rejects those first) is skipped with an error logged.
    pub fn from_config(config: &Config) -> Arc<Self> {
        let rules = config
            .guardrails
            .rules
            .iter()
            .filter_map(|r| match compile(r) {
                Ok(rule) => Some(rule),
                Err(e) => {
                    tracing::error!(rule = r.display_name(), error = %e, "guardrail rule skipped");
                    None
                }
            })
            .collect();
        Arc::new(Self { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Runs the rules that apply to `model` and `who` over `spec`: the
    /// first blocking match is the 400; redactions change `spec` in place.
    pub fn apply(
        &self,
        spec: &mut ChatSpec,
        model: &str,
        who: &Identity,
    ) -> Result<Applied, GatewayError> {
        let mut applied = Applied::default();
        for rule in self
            .rules
            .iter()
            .filter(|r| r.scope.request() && r.applies(model, who))
        {
            let Some((detector, count)) = rule.run(|f| each_text(spec, f)) else {
                continue;
            };
            tracing::info!(
                target: "switchyard::guardrails",
                rule = %rule.name,
                detector = %detector,
                action = ?rule.action,
                matches = count,
                "guardrail matched"
            );
            match rule.action {
                GuardrailAction::Block => {
                    return Err(GatewayError::GuardrailBlocked {
                        rule: rule.name.clone(),
                        detector,
                    });
                }
                GuardrailAction::Redact | GuardrailAction::Log => {
                    applied.matched.push(format!(
                        "{}:{}/{detector}*{count}",
                        action_name(rule.action),
                        rule.name
                    ));
                }
            }
        }
        Ok(applied)
    }

    /// The answer side of [`Self::apply`] for a complete answer: redacts
    /// the assistant text and tool-call arguments in place, or refuses the
    /// answer on the first blocking match.
    pub fn apply_response(
        &self,
        result: &mut ChatResult,
        model: &str,
        who: &Identity,
    ) -> Result<(), GatewayError> {
        for rule in self.response_rules(model, who) {
            let Some((detector, count)) = rule.run(|f| each_answer_text(result, f)) else {
                continue;
            };
            log_answer_match(&rule.name, rule.action, &detector, count);
            if rule.action == GuardrailAction::Block {
                return Err(GatewayError::GuardrailBlockedAnswer {
                    rule: rule.name.clone(),
                    detector,
                });
            }
        }
        Ok(())
    }

    /// `stream` with the answer rules that apply to `model` and `who`
    /// run over it (unchanged when none does).
    pub fn stream(&self, stream: ChatStream, model: &str, who: &Identity) -> ChatStream {
        let rules: Vec<StreamRule> = self
            .response_rules(model, who)
            .map(|r| StreamRule {
                name: r.name.clone(),
                action: r.action,
                scanner: Arc::clone(&r.scanner),
                matches: 0,
                first: None,
            })
            .collect();
        if rules.is_empty() {
            return stream;
        }
        Box::pin(GuardedStream {
            inner: stream,
            guard: AnswerGuard {
                rules,
                fields: Vec::new(),
                head: None,
            },
            queue: VecDeque::new(),
            done: false,
        })
    }

    fn response_rules<'a>(
        &'a self,
        model: &'a str,
        who: &'a Identity,
    ) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules
            .iter()
            .filter(move |r| r.scope.response() && r.applies(model, who))
    }
}

/// The info line of an answer rule that matched: never the match itself.
fn log_answer_match(rule: &str, action: GuardrailAction, detector: &str, count: usize) {
    tracing::info!(
        target: "switchyard::guardrails",
        rule = %rule,
        detector = %detector,
        action = ?action,
        matches = count,
        side = "response",
        "guardrail matched"
    );
}

/// An answer rule as a stream runs it, with its totals for the log line.
struct StreamRule {
    name: String,
    action: GuardrailAction,
    scanner: Arc<Scanner>,
    matches: usize,
    first: Option<String>,
}

/// Which streamed text of a choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Text {
    Content,
    Reasoning,
    /// A tool call's arguments, by the call's index.
    Tool(u32),
}

/// One streamed text: one redactor per answer rule, in rule order.
struct Field {
    choice: u32,
    text: Text,
    chain: Vec<StreamRedactor<Arc<Scanner>>>,
}

/// A blocking rule matched: which one, on what.
struct Stop {
    rule: usize,
    detector: String,
}

/// The rules' state over one streamed answer.
struct AnswerGuard {
    rules: Vec<StreamRule>,
    fields: Vec<Field>,
    /// Id, model and time of the first chunk, for the chunk that flushes
    /// what is still held when the stream ends.
    head: Option<ChatChunk>,
}

impl AnswerGuard {
    fn field(&mut self, choice: u32, text: Text) -> usize {
        if let Some(i) = self
            .fields
            .iter()
            .position(|f| f.choice == choice && f.text == text)
        {
            return i;
        }
        let chain = self
            .rules
            .iter()
            .map(|r| StreamRedactor::new(Arc::clone(&r.scanner)))
            .collect();
        self.fields.push(Field {
            choice,
            text,
            chain,
        });
        self.fields.len() - 1
    }

    /// Runs `text` through field `i`'s rules: what may be sent now (all
    /// that is left when `last`), and the blocking match, if one stopped it
    /// (the text returned is then what came before the match).
    fn feed(&mut self, i: usize, text: &str, last: bool) -> (String, Option<Stop>) {
        let mut t = text.to_owned();
        let mut stop: Option<Stop> = None;
        let field = &mut self.fields[i];
        for (k, (rule, r)) in self.rules.iter_mut().zip(&mut field.chain).enumerate() {
            let before: Vec<(String, usize)> = r.found().to_vec();
            // After a block, what came before the match still goes through
            // the later rules, to its end.
            let last = last || stop.is_some();
            match rule.action {
                GuardrailAction::Redact => {
                    let mut out = r.push(&t);
                    if last {
                        out.push_str(&r.finish());
                    }
                    t = out;
                }
                GuardrailAction::Log => {
                    // Counted only: the text goes on unchanged, undelayed.
                    let _ = r.push(&t);
                    if last {
                        let _ = r.finish();
                    }
                }
                GuardrailAction::Block => {
                    let out = r.push_or_block(&t).and_then(|mut out| {
                        if last {
                            match r.finish_or_block() {
                                Ok(rest) => out.push_str(&rest),
                                Err(b) => {
                                    return Err(Blocked {
                                        detector: b.detector,
                                        before: out + &b.before,
                                    });
                                }
                            }
                        }
                        Ok(out)
                    });
                    match out {
                        Ok(out) => t = out,
                        Err(b) => {
                            t = b.before;
                            stop.get_or_insert(Stop {
                                rule: k,
                                detector: b.detector,
                            });
                        }
                    }
                }
            }
            // Totals per rule for the log line at the end.
            for (detector, n) in r.found() {
                let was = before
                    .iter()
                    .find(|(d, _)| d == detector)
                    .map_or(0, |(_, n)| *n);
                if *n > was {
                    rule.matches += n - was;
                    rule.first.get_or_insert_with(|| detector.clone());
                }
            }
        }
        (t, stop)
    }

    /// A chunk as it may be sent: its texts through the rules. With a
    /// blocking match, the chunk holds what came before it, and the stop.
    fn chunk(&mut self, mut chunk: ChatChunk) -> (ChatChunk, Option<Stop>) {
        if chunk.native_event.is_some() {
            // Native Responses events go out as the upstream sent them.
            return (chunk, None);
        }
        if self.head.is_none() {
            self.head = Some(crate::core::chunk_head(&chunk));
        }
        for ci in 0..chunk.choices.len() {
            let stop = self.choice(&mut chunk.choices[ci]);
            if stop.is_some() {
                chunk.choices.truncate(ci + 1);
                chunk.usage = None;
                return (chunk, stop);
            }
        }
        (chunk, None)
    }

    fn choice(&mut self, c: &mut ChoiceDelta) -> Option<Stop> {
        let finished = c.finish_reason != FinishReason::Unspecified as i32;
        if let Some(text) = &mut c.content {
            let i = self.field(c.index, Text::Content);
            let (out, stop) = self.feed(i, text, finished);
            *text = out;
            if stop.is_some() {
                c.reasoning_content = None;
                c.tool_calls.clear();
                c.finish_reason = FinishReason::Unspecified as i32;
                return stop;
            }
        }
        if let Some(text) = &mut c.reasoning_content {
            let i = self.field(c.index, Text::Reasoning);
            let (out, stop) = self.feed(i, text, finished);
            *text = out;
            if stop.is_some() {
                c.tool_calls.clear();
                c.finish_reason = FinishReason::Unspecified as i32;
                return stop;
            }
        }
        for ti in 0..c.tool_calls.len() {
            let i = self.field(c.index, Text::Tool(c.tool_calls[ti].index));
            let args = std::mem::take(&mut c.tool_calls[ti].arguments);
            let (out, stop) = self.feed(i, &args, finished);
            c.tool_calls[ti].arguments = out;
            if stop.is_some() {
                c.tool_calls.truncate(ti + 1);
                c.finish_reason = FinishReason::Unspecified as i32;
                return stop;
            }
        }
        if finished {
            // The choice is complete: what its other texts still hold goes
            // out with its finish.
            let index = c.index;
            let open: Vec<usize> = (0..self.fields.len())
                .filter(|&i| {
                    self.fields[i].choice == index
                        && self.fields[i].chain.iter().any(|r| r.held() > 0)
                })
                .collect();
            for i in open {
                let (rest, stop) = self.feed(i, "", true);
                add_text(c, self.fields[i].text, &rest);
                if stop.is_some() {
                    c.finish_reason = FinishReason::Unspecified as i32;
                    return stop;
                }
            }
        }
        None
    }

    /// A chunk with everything still held (at the end of the stream).
    fn flush(&mut self) -> (Option<ChatChunk>, Option<Stop>) {
        let mut chunk = self.head.clone().unwrap_or_default();
        let mut stop = None;
        for i in 0..self.fields.len() {
            if !self.fields[i].chain.iter().any(|r| r.held() > 0) {
                continue;
            }
            let (rest, s) = self.feed(i, "", true);
            let (choice, text) = (self.fields[i].choice, self.fields[i].text);
            if !rest.is_empty() {
                let at = match chunk.choices.iter().position(|c| c.index == choice) {
                    Some(at) => at,
                    None => {
                        chunk.choices.push(ChoiceDelta {
                            index: choice,
                            ..ChoiceDelta::default()
                        });
                        chunk.choices.len() - 1
                    }
                };
                add_text(&mut chunk.choices[at], text, &rest);
            }
            if s.is_some() {
                stop = s;
                break;
            }
        }
        ((!chunk.choices.is_empty()).then_some(chunk), stop)
    }

    /// The log line per rule that matched (a blocking one logs when it
    /// stops the stream).
    fn log(&self) {
        for rule in &self.rules {
            if let Some(detector) = &rule.first
                && rule.action != GuardrailAction::Block
            {
                log_answer_match(&rule.name, rule.action, detector, rule.matches);
            }
        }
    }

    fn blocked(&self, stop: Stop) -> StreamItem {
        let rule = &self.rules[stop.rule];
        log_answer_match(&rule.name, rule.action, &stop.detector, rule.matches.max(1));
        StreamItem::Failed(GatewayError::GuardrailBlockedAnswer {
            rule: rule.name.clone(),
            detector: stop.detector,
        })
    }
}

/// Appends `rest` to a choice's text of kind `text`.
fn add_text(c: &mut ChoiceDelta, text: Text, rest: &str) {
    if rest.is_empty() {
        return;
    }
    match text {
        Text::Content => c.content.get_or_insert_with(String::new).push_str(rest),
        Text::Reasoning => c
            .reasoning_content
            .get_or_insert_with(String::new)
            .push_str(rest),
        Text::Tool(index) => match c.tool_calls.iter_mut().find(|t| t.index == index) {
            Some(t) => t.arguments.push_str(rest),
            None => c.tool_calls.push(ToolCallDelta {
                index,
                arguments: rest.to_owned(),
                ..ToolCallDelta::default()
            }),
        },
    }
}

/// A stream with the answer rules run over it.
struct GuardedStream {
    inner: ChatStream,
    guard: AnswerGuard,
    /// Items ready to go out (a chunk and the item after it).
    queue: VecDeque<StreamItem>,
    /// Nothing more is read from `inner` (it ended, or a rule stopped it).
    done: bool,
}

impl GuardedStream {
    /// Queues what is still held, then `then` (the item that ends the
    /// stream, if any); a blocking match in the held text ends it instead.
    fn finish(&mut self, then: Option<StreamItem>) {
        // `Done` and `Failed` end a stream: nothing is read after them.
        self.done = true;
        let (chunk, stop) = self.guard.flush();
        if let Some(chunk) = chunk {
            self.queue.push_back(StreamItem::Chunk(chunk));
        }
        self.guard.log();
        match stop {
            Some(stop) => self.queue.push_back(self.guard.blocked(stop)),
            None => self.queue.extend(then),
        }
    }
}

impl Stream for GuardedStream {
    type Item = StreamItem;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<StreamItem>> {
        let this = self.get_mut();
        loop {
            if let Some(item) = this.queue.pop_front() {
                return Poll::Ready(Some(item));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => this.finish(None),
                Poll::Ready(Some(StreamItem::Chunk(chunk))) => {
                    let (chunk, stop) = this.guard.chunk(chunk);
                    this.queue.push_back(StreamItem::Chunk(chunk));
                    if let Some(stop) = stop {
                        this.guard.log();
                        let failed = this.guard.blocked(stop);
                        this.queue.push_back(failed);
                        // Dropping the upstream stream cancels the call.
                        this.done = true;
                    }
                }
                Poll::Ready(Some(item @ (StreamItem::Done(_) | StreamItem::Failed(_)))) => {
                    this.finish(Some(item));
                }
            }
        }
    }
}

impl Rule {
    fn applies(&self, model: &str, who: &Identity) -> bool {
        let listed = |list: &[String], v: Option<&str>| {
            list.is_empty() || v.is_some_and(|v| list.iter().any(|x| x == v))
        };
        listed(&self.models, Some(model))
            && listed(&self.teams, who.team.as_deref())
            && listed(&self.keys, who.key_name.as_deref())
    }
}

fn compile(r: &GuardrailRule) -> Result<Rule, switchyard_guardrails::GuardrailError> {
    let name = r.display_name().to_owned();
    let scanner = match (Builtin::from_name(&r.detector), &r.pattern) {
        (Some(b), _) => Scanner::new(&[b], &[])?,
        (None, Some(p)) => Scanner::new(&[], &[(name.clone(), p.clone())])?,
        // Validation refuses it; nothing to match.
        (None, None) => Scanner::new(&[], &[])?,
    };
    Ok(Rule {
        name,
        action: r.action,
        scope: r.applies_to,
        models: r.models.clone(),
        teams: r.teams.clone(),
        keys: r.keys.clone(),
        scanner: Arc::new(scanner),
    })
}

impl Rule {
    /// Scans every text `each` visits, redacting in place when the rule
    /// redacts: the first detector that matched, and how many matches.
    fn run(&self, each: impl FnOnce(&mut dyn FnMut(&mut String))) -> Option<(String, usize)> {
        let mut first: Option<String> = None;
        let mut count = 0usize;
        each(&mut |text| {
            let findings = self.scanner.scan(text);
            let Some(head) = findings.first() else {
                return;
            };
            count += findings.len();
            first.get_or_insert_with(|| head.detector.clone());
            if self.action == GuardrailAction::Redact {
                *text = redact(text, &findings);
            }
        });
        first.map(|d| (d, count))
    }
}

/// Calls `f` on every text the request sends upstream, mutably.
fn each_text(spec: &mut ChatSpec, f: &mut dyn FnMut(&mut String)) {
    for m in &mut spec.messages {
        for p in &mut m.content {
            if let Some(Part::Text(t)) = &mut p.part {
                f(t);
            }
        }
        for c in &mut m.tool_calls {
            f(&mut c.arguments);
        }
    }
    if let Some(original) = &mut spec.responses_request {
        for v in original.fields.values_mut() {
            each_string(v, f);
        }
    }
}

/// Calls `f` on every text of an answer: the assistant's text parts and
/// its tool calls' arguments.
fn each_answer_text(result: &mut ChatResult, f: &mut dyn FnMut(&mut String)) {
    for c in &mut result.choices {
        let Some(m) = &mut c.message else { continue };
        for p in &mut m.content {
            if let Some(Part::Text(t)) = &mut p.part {
                f(t);
            }
        }
        for t in &mut m.tool_calls {
            f(&mut t.arguments);
        }
    }
}

/// Every string inside a JSON value (the Responses request a native target
/// would get as it is).
fn each_string(v: &mut prost_types::Value, f: &mut dyn FnMut(&mut String)) {
    use prost_types::value::Kind;
    match &mut v.kind {
        Some(Kind::StringValue(s)) => f(s),
        Some(Kind::ListValue(l)) => {
            for v in &mut l.values {
                each_string(v, f);
            }
        }
        Some(Kind::StructValue(s)) => {
            for v in s.fields.values_mut() {
                each_string(v, f);
            }
        }
        Some(Kind::NullValue(_) | Kind::NumberValue(_) | Kind::BoolValue(_)) | None => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use futures_util::StreamExt;
    use switchyard_proto::gateway::v1::{ChatChunk, ChoiceDelta, ToolCallDelta};

    use super::*;

    fn rules(rules: &[(&str, GuardrailAction, GuardrailScope)]) -> Guardrails {
        let rules = rules
            .iter()
            .map(|&(detector, action, applies_to)| {
                compile(&GuardrailRule {
                    name: None,
                    detector: detector.to_owned(),
                    pattern: None,
                    action,
                    models: Vec::new(),
                    teams: Vec::new(),
                    keys: Vec::new(),
                    applies_to,
                })
                .unwrap()
            })
            .collect();
        Guardrails { rules }
    }

    fn content(index: u32, text: &str) -> ChoiceDelta {
        ChoiceDelta {
            index,
            content: Some(text.to_owned()),
            ..ChoiceDelta::default()
        }
    }

    fn chunk(choices: Vec<ChoiceDelta>) -> StreamItem {
        StreamItem::Chunk(ChatChunk {
            id: "c1".to_owned(),
            choices,
            ..ChatChunk::default()
        })
    }

    async fn run(g: &Guardrails, items: Vec<StreamItem>) -> Vec<StreamItem> {
        let s: ChatStream = Box::pin(futures_util::stream::iter(items));
        g.stream(s, "m", &Identity::default()).collect().await
    }

    /// Texts per (choice, kind) joined, and the last item.
    fn joined(items: &[StreamItem]) -> (Vec<(u32, String, String)>, Option<StreamItem>) {
        let mut out: Vec<(u32, String, String)> = Vec::new();
        for item in items {
            let StreamItem::Chunk(c) = item else { continue };
            for d in &c.choices {
                let mut add = |kind: String, t: &str| match out
                    .iter_mut()
                    .find(|(i, k, _)| *i == d.index && *k == kind)
                {
                    Some((_, _, s)) => s.push_str(t),
                    None => out.push((d.index, kind, t.to_owned())),
                };
                if let Some(t) = &d.content {
                    add("content".to_owned(), t);
                }
                for t in &d.tool_calls {
                    add(format!("tool{}", t.index), &t.arguments);
                }
            }
        }
        out.retain(|(_, _, s)| !s.is_empty());
        (out, items.last().cloned())
    }

    const TEXT: &str = "pay 4111 1111 1111 1111 or mail jane@example.com — done";

    #[tokio::test]
    async fn streamed_text_is_redacted_at_every_split() {
        use GuardrailAction::*;
        use GuardrailScope::*;
        let g = rules(&[
            ("card", Redact, Response),
            ("email", Redact, Both),
            ("ssn", Redact, Request),
        ]);
        let want = "pay [REDACTED:card] or mail [REDACTED:email] — done";
        let cuts: Vec<usize> = TEXT.char_indices().map(|(i, _)| i).collect();
        for &i in &cuts {
            let items = vec![
                chunk(vec![content(0, &TEXT[..i])]),
                chunk(vec![content(0, &TEXT[i..])]),
                StreamItem::Done(None),
            ];
            let out = run(&g, items).await;
            let (texts, last) = joined(&out);
            assert_eq!(
                texts,
                vec![(0, "content".to_owned(), want.to_owned())],
                "cut {i}"
            );
            assert_eq!(last, Some(StreamItem::Done(None)));
        }
        // One character per chunk, two choices interleaved, and tool-call
        // arguments, with the finish in the last content chunk.
        let mut items = Vec::new();
        for c in TEXT.chars() {
            items.push(chunk(vec![
                content(0, &c.to_string()),
                ChoiceDelta {
                    index: 1,
                    tool_calls: vec![ToolCallDelta {
                        index: 0,
                        arguments: c.to_string(),
                        ..ToolCallDelta::default()
                    }],
                    ..ChoiceDelta::default()
                },
            ]));
        }
        items.push(chunk(vec![ChoiceDelta {
            index: 0,
            finish_reason: FinishReason::Stop as i32,
            ..ChoiceDelta::default()
        }]));
        items.push(StreamItem::Done(None));
        let out = run(&g, items).await;
        let (texts, last) = joined(&out);
        assert_eq!(
            texts,
            vec![
                (0, "content".to_owned(), want.to_owned()),
                (1, "tool0".to_owned(), want.to_owned()),
            ]
        );
        assert_eq!(last, Some(StreamItem::Done(None)));
    }

    #[tokio::test]
    async fn a_blocking_rule_stops_the_stream_before_the_match() {
        use GuardrailAction::*;
        use GuardrailScope::*;
        let g = rules(&[("email", Redact, Response), ("card", Block, Response)]);
        let mut items: Vec<StreamItem> = TEXT
            .split_inclusive(' ')
            .map(|w| chunk(vec![content(0, w)]))
            .collect();
        items.push(StreamItem::Done(None));
        let out = run(&g, items).await;
        let (texts, last) = joined(&out);
        assert_eq!(texts, vec![(0, "content".to_owned(), "pay ".to_owned())]);
        let Some(StreamItem::Failed(GatewayError::GuardrailBlockedAnswer { rule, detector })) =
            last
        else {
            panic!("{last:?}");
        };
        assert_eq!((rule.as_str(), detector.as_str()), ("card", "card"));
    }

    #[tokio::test]
    async fn request_rules_leave_answers_alone() {
        use GuardrailAction::*;
        let g = rules(&[("card", Block, GuardrailScope::Request)]);
        let items = vec![chunk(vec![content(0, TEXT)]), StreamItem::Done(None)];
        assert_eq!(run(&g, items.clone()).await, items);
    }

    #[test]
    fn a_complete_answer_is_redacted_or_blocked() {
        use GuardrailAction::*;
        use GuardrailScope::*;
        use switchyard_proto::gateway::v1::{Choice, ContentPart, Message, ToolCall};
        let answer = ChatResult {
            choices: vec![Choice {
                message: Some(Message {
                    content: vec![ContentPart {
                        part: Some(Part::Text(TEXT.to_owned())),
                        ..ContentPart::default()
                    }],
                    tool_calls: vec![ToolCall {
                        arguments: r#"{"to":"jane@example.com"}"#.to_owned(),
                        ..ToolCall::default()
                    }],
                    ..Message::default()
                }),
                ..Choice::default()
            }],
            ..ChatResult::default()
        };
        let who = Identity::default();
        let g = rules(&[("card", Redact, Both), ("email", Redact, Response)]);
        let mut r = answer.clone();
        g.apply_response(&mut r, "m", &who).unwrap();
        let m = r.choices[0].message.as_ref().unwrap();
        assert_eq!(
            m.content[0].part,
            Some(Part::Text(
                "pay [REDACTED:card] or mail [REDACTED:email] — done".to_owned()
            ))
        );
        assert_eq!(m.tool_calls[0].arguments, r#"{"to":"[REDACTED:email]"}"#);

        let g = rules(&[("email", Block, Response)]);
        let mut r = answer.clone();
        let e = g.apply_response(&mut r, "m", &who).unwrap_err();
        assert!(
            matches!(e, GatewayError::GuardrailBlockedAnswer { .. }),
            "{e:?}"
        );
        assert_eq!(e.class().status, http::StatusCode::UNPROCESSABLE_ENTITY);
        assert!(!e.to_string().contains("jane"), "{e}");
    }
}
