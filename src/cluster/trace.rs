//! Request ids across nodes. The gateway opens a `request` span with a `request_id` field;
//! ractor carries the current span into every actor a message reaches on this node, and
//! [`RequestIdLayer`] keeps the id on the span, so [`current_request_id`] finds it wherever a
//! remote call starts. The peer on the other node opens a span with the same id, so each
//! node's log lines for that request carry it.

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Remembers each span's `request_id` field.
pub struct RequestIdLayer;

struct RequestId(String);

struct Find(Option<String>);

impl Visit for Find {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "request_id" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "request_id" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for RequestIdLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut find = Find(None);
        attrs.record(&mut find);
        if let (Some(value), Some(span)) = (find.0, ctx.span(id)) {
            span.extensions_mut().insert(RequestId(value));
        }
    }
}

/// The request id of the innermost enclosing span that has one.
pub fn current_request_id() -> Option<String> {
    tracing::Span::current()
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
            let span = registry.span(id)?;
            span.scope()
                .find_map(|s| s.extensions().get::<RequestId>().map(|r| r.0.clone()))
        })
        .flatten()
}
