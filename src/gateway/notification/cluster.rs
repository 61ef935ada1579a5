//! `GET /api/notifications/stream` in a replicated cluster: every notification of the
//! cluster, from any node. The node asks the partitions' leaders (through the routing layer's
//! lists) for what came after a cursor, every [`POLL_EVERY`] while nothing is new. The cursor
//! holds, per partition, the key of the last record sent; each event's id is the cursor after
//! it, so a client that reconnects to any node with `Last-Event-ID` gets every record once.
//! Records come partition by partition in key order (the order of each partition's log).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::NotificationJson;
use crate::domain::Invalid;
use crate::routing::Directory;
use crate::storage::event_group;

/// How long a stream waits before it asks again when nothing was new.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Records of one partition one ask may bring.
const PER_ASK: usize = 200;

/// Per partition, the key of the last record the client has.
type Cursor = BTreeMap<u32, u64>;

/// The events after `last_event_id` (none: from the first record), without end: a task asks
/// and sends them on, until the client is gone.
pub fn events(
    directory: Directory,
    last_event_id: Option<&str>,
) -> Result<impl Stream<Item = Result<warp::sse::Event, Infallible>>, Invalid> {
    let mut cursor = match last_event_id {
        Some(id) => parse(id)?,
        None => Cursor::new(),
    };
    let (events, stream) = mpsc::channel(PER_ASK);
    tokio::spawn(async move {
        while !events.is_closed() {
            let mut records = match directory
                .list_notifications_since(cursor.clone(), PER_ASK)
                .await
            {
                Ok(gathered) => gathered.items,
                Err(e) => {
                    tracing::debug!(error = %e, "the notification stream could not ask");
                    Vec::new()
                }
            };
            records.sort_by_key(|r| r.seq);
            let mut sent = 0;
            for record in records {
                let partition = event_group(record.seq) as u32;
                // Two nodes that both believed they led a partition list it twice.
                if cursor
                    .get(&partition)
                    .is_some_and(|last| *last >= record.seq)
                {
                    continue;
                }
                cursor.insert(partition, record.seq);
                let event = warp::sse::Event::default()
                    .id(render(&cursor))
                    .event(record.event_type.clone());
                let Ok(event) = event.json_data(NotificationJson::from(&record)) else {
                    continue;
                };
                if events.send(Ok(event)).await.is_err() {
                    return;
                }
                sent += 1;
            }
            if sent == 0 {
                tokio::time::sleep(POLL_EVERY).await;
            }
        }
    });
    Ok(ReceiverStream::new(stream))
}

/// `partition:key` pairs, comma-separated (keys in hexadecimal).
fn render(cursor: &Cursor) -> String {
    let pairs = cursor.iter().map(|(p, key)| format!("{p}:{key:x}"));
    pairs.collect::<Vec<_>>().join(",")
}

fn parse(id: &str) -> Result<Cursor, Invalid> {
    let bad = || Invalid::new("Last-Event-ID", "must be an id this stream sent");
    let pair = |pair: &str| -> Result<(u32, u64), Invalid> {
        let (partition, key) = pair.split_once(':').ok_or_else(bad)?;
        let partition: u32 = partition.parse().map_err(|_| bad())?;
        let key = u64::from_str_radix(key, 16).map_err(|_| bad())?;
        match event_group(key) == u64::from(partition) {
            true => Ok((partition, key)),
            false => Err(bad()),
        }
    };
    (id.split(',').filter(|p| !p.is_empty()).map(pair)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::first_key;

    #[test]
    fn a_cursor_reads_back_as_it_was_written() {
        let cursor = Cursor::from([(0, 5), (3, first_key(3) + 17)]);
        assert_eq!(parse(&render(&cursor)).unwrap(), cursor);
        assert_eq!(parse("").unwrap(), Cursor::new());
        assert!(parse("1:5").is_err(), "a key of another partition");
        assert!(parse("x").is_err());
    }
}
