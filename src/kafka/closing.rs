//! A group consumer whose close cannot hang the process.
//!
//! rdkafka closes a group consumer on drop and polls until librdkafka says it has left
//! the group, with no deadline: when the coordinator is gone (a cluster stopped, a broker
//! killed) that loop never ends, and it runs on whatever thread drops the consumer — an
//! actix arbiter, which then serves nothing again. Offsets are stored only after their
//! work is committed, so a consumer that cannot leave cleanly loses nothing: the group
//! times its member out.

use std::ops::Deref;
use std::time::Duration;

use rdkafka::consumer::{ConsumerContext, StreamConsumer};

/// How long a stopping consumer may take to leave its group before it is left to
/// finish in the background.
pub const CLOSE_DEADLINE: Duration = Duration::from_secs(5);

/// Owns a `StreamConsumer`; dropping it closes the consumer on a thread of its own and
/// waits at most [`CLOSE_DEADLINE`].
pub struct Closing<C: ConsumerContext + 'static> {
    consumer: Option<StreamConsumer<C>>,
    name: &'static str,
}

impl<C: ConsumerContext + 'static> Closing<C> {
    pub fn new(consumer: StreamConsumer<C>, name: &'static str) -> Self {
        Closing {
            consumer: Some(consumer),
            name,
        }
    }
}

impl<C: ConsumerContext + 'static> Deref for Closing<C> {
    type Target = StreamConsumer<C>;

    fn deref(&self) -> &StreamConsumer<C> {
        // Only `drop` takes the consumer out.
        self.consumer
            .as_ref()
            .unwrap_or_else(|| unreachable!("a Closing consumer is only emptied by drop"))
    }
}

impl<C: ConsumerContext + 'static> Drop for Closing<C> {
    fn drop(&mut self) {
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        let (closed, wait) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("kafka-close-{}", self.name))
            .spawn(move || {
                drop(consumer);
                let _ = closed.send(());
            });
        if let Err(e) = spawned {
            tracing::warn!(consumer = self.name, error = %e, "cannot start a thread to close the consumer; it is left open");
            return;
        }
        if wait.recv_timeout(CLOSE_DEADLINE).is_err() {
            tracing::warn!(
                consumer = self.name,
                deadline = ?CLOSE_DEADLINE,
                "the consumer did not leave its group in time (is the cluster reachable?); the group will time it out"
            );
        }
    }
}
