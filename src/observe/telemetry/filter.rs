//! Per-layer filters that decide afresh for every span and event.
//!
//! `tracing-subscriber` passes a per-layer filter's decision from `enabled` to the layer's
//! `on_new_span` / `on_event` through a thread-local. A callsite whose interest is cached as
//! `always` skips `enabled`, so its span or event reads whatever the last `enabled` call on
//! that thread left there (tokio-rs/tracing#2519). A check that is not followed by a span or
//! event leaves a stale "disabled": sqlx asks `log::log_enabled!` after each statement, so the
//! next request span was silently missing from its trace (the plan and statements of the
//! first query after a mutation became a trace of their own). A log line can be dropped the
//! same way (the test below shows it), though no request line was seen lost. [`Fresh`] caps
//! a filter's callsite interest at `sometimes`, so `enabled` runs, and writes its decision,
//! right before every span and event it lets through.

use tracing::subscriber::Interest;
use tracing::{Metadata, span};
use tracing_subscriber::layer::{Context, Filter};

/// `F`, asked on every span and event (see the module's note); a callsite `F` never wants
/// stays disabled for good.
pub struct Fresh<F>(pub F);

impl<S, F: Filter<S>> Filter<S> for Fresh<F> {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        self.0.enabled(meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.0.callsite_enabled(meta).is_never() {
            Interest::never()
        } else {
            Interest::sometimes()
        }
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, cx: &Context<'_, S>) -> bool {
        self.0.event_enabled(event, cx)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        self.0.max_level_hint()
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, cx: Context<'_, S>) {
        self.0.on_new_span(attrs, id, cx)
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, cx: Context<'_, S>) {
        self.0.on_record(id, values, cx)
    }

    fn on_enter(&self, id: &span::Id, cx: Context<'_, S>) {
        self.0.on_enter(id, cx)
    }

    fn on_exit(&self, id: &span::Id, cx: Context<'_, S>) {
        self.0.on_exit(id, cx)
    }

    fn on_close(&self, id: span::Id, cx: Context<'_, S>) {
        self.0.on_close(id, cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::Fresh;
    use crate::observe::telemetry::{LogFormat, log_layer};

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).extend(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    /// What `log::log_enabled!` does through the `log` bridge: asks the dispatcher about
    /// metadata the filter disables, with no event after.
    fn ask_about_a_disabled_debug_line() {
        let probe = tracing::debug_span!("probe");
        let meta = probe
            .metadata()
            .expect("a disabled span keeps its metadata");
        let _ = tracing::dispatcher::get_default(|d| d.enabled(meta));
    }

    fn lines_after_a_stale_check(fresh: bool) -> String {
        let lines = Lines::default();
        let targets: tracing_subscriber::filter::Targets = "info".parse().expect("targets");
        let layer = log_layer(LogFormat::Text, false, lines.clone());
        let subscriber: Box<dyn tracing::Subscriber + Send + Sync> = if fresh {
            Box::new(tracing_subscriber::registry().with(layer.with_filter(Fresh(targets))))
        } else {
            Box::new(tracing_subscriber::registry().with(layer.with_filter(targets)))
        };
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("first");
            ask_about_a_disabled_debug_line();
            tracing::info!("second");
        });
        let text = lines.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8_lossy(&text).into_owned()
    }

    #[test]
    fn a_check_without_an_event_does_not_drop_the_next_line() {
        let text = lines_after_a_stale_check(true);
        assert!(
            text.contains(" first") && text.contains(" second"),
            "{text}"
        );
    }

    /// The defect [`Fresh`] works around, shown on the unwrapped filter: when this starts
    /// failing, `tracing-subscriber` has fixed it and `Fresh` can go.
    #[test]
    fn without_it_the_next_line_is_dropped() {
        let text = lines_after_a_stale_check(false);
        assert!(
            text.contains(" first") && !text.contains(" second"),
            "{text}"
        );
    }
}
