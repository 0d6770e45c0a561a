//! GetContainerEvents: a live stream of container lifecycle events (kubelet's evented PLEG).
//!
//! Events are published as they happen and are not stored: a subscriber sees what happens
//! after it subscribed, as with containerd. A subscriber too slow to keep up misses events
//! (it is told so in the log) rather than slowing down the runtime.

use corral_cri::v1;
use tokio::sync::broadcast;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use super::BoxStream;

/// Events buffered per subscriber before it starts missing them.
const BUFFER: usize = 1024;

/// The publishing side, owned by the daemon.
pub struct Events {
    tx: broadcast::Sender<v1::ContainerEventResponse>,
}

impl Default for Events {
    fn default() -> Self {
        Events { tx: broadcast::channel(BUFFER).0 }
    }
}

impl Events {
    /// Sends an event to every current subscriber (none is fine).
    pub fn publish(&self, event: v1::ContainerEventResponse) {
        let _ = self.tx.send(event);
    }

    /// A stream of every event published from now on.
    pub fn subscribe(&self) -> BoxStream<v1::ContainerEventResponse> {
        let stream = BroadcastStream::new(self.tx.subscribe()).filter_map(|item| match item {
            Ok(event) => Some(Ok(event)),
            Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "container event subscriber is too slow; events dropped");
                None
            }
        });
        Box::pin(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_see_events_published_after_they_subscribed() {
        let events = Events::default();
        events.publish(v1::ContainerEventResponse { container_id: "before".into(), ..Default::default() });
        let mut stream = events.subscribe();
        events.publish(v1::ContainerEventResponse {
            container_id: "after".into(),
            container_event_type: v1::ContainerEventType::ContainerStartedEvent as i32,
            ..Default::default()
        });
        let got = stream.next().await.unwrap().unwrap();
        assert_eq!(got.container_id, "after");
        assert_eq!(got.container_event_type, v1::ContainerEventType::ContainerStartedEvent as i32);
    }
}
