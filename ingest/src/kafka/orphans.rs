//! Partitions nobody reads. A group coordinator can leave a partition assigned to no member
//! (seen with Tansu: after a cooperative rebalance, and while a killed member's session was
//! still open), and then no one ever reads it. A quiet member watches the group's committed
//! offsets of the partitions it does not hold: every live reader commits each commit
//! interval, so an offset below the end that stays put for longer than a dead member's
//! session plus two commit intervals (and a margin) belongs to nobody, and the member
//! rejoins the group so that its coordinator assigns every partition afresh.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// Added to a dead member's session and two commit intervals before a partition counts as
/// read by nobody.
const ORPHAN_MARGIN: Duration = Duration::from_secs(15);

/// A partition not held here whose committed offset is below its end.
#[derive(Debug, Clone, Copy)]
pub(super) struct Unread {
    pub(super) partition: i32,
    /// Messages past the committed offset.
    pub(super) messages: u64,
    /// How long the committed offset has not moved (since it was first seen, if never).
    pub(super) still_for: Duration,
    /// The committed offset moved while watched: someone reads it.
    pub(super) moved: bool,
}

/// A partition's offsets as the brokers and the group see them.
struct Offsets {
    partition: i32,
    /// The group's committed offset (`None`: nothing committed yet).
    committed: Option<i64>,
    low: i64,
    high: i64,
}

/// What one partition's committed offset did while watched.
struct Watch {
    committed: i64,
    since: Instant,
    moved: bool,
}

/// The watch over the partitions a member does not hold.
pub(super) struct Orphans {
    seen: BTreeMap<i32, Watch>,
    /// A live reader commits within this (two commit intervals).
    live_within: Duration,
    /// Still longer than this: nobody reads it (a dead member's session, `live_within` and
    /// [`ORPHAN_MARGIN`]).
    orphaned_after: Duration,
    pub(super) last_check: Option<Instant>,
    /// What the last check found.
    unread: Vec<Unread>,
}

impl Orphans {
    pub(super) fn new(commit_interval: Duration, session_timeout: Duration) -> Self {
        let live_within = commit_interval * 2 + Duration::from_secs(1);
        Self {
            seen: BTreeMap::new(),
            live_within,
            // A reader starved of CPU commits late too (seen: 14 s without a commit on a
            // loaded 2-core machine), and a needless rejoin costs the whole group a
            // rebalance: wait well past that.
            orphaned_after: session_timeout + live_within + ORPHAN_MARGIN,
            last_check: None,
            unread: Vec::new(),
        }
    }

    /// Asks the brokers for the topic's partitions, the group's committed offsets of those
    /// not `held`, and their end offsets (a few round trips); keeps what is unread.
    pub(super) fn check<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        topic: &str,
        held: &[i32],
        now: Instant,
    ) {
        self.last_check = Some(now);
        let Some(committed) = committed_elsewhere(consumer, topic, held) else {
            return;
        };
        let offsets: Vec<Offsets> = committed
            .into_iter()
            .filter_map(|(partition, committed)| {
                let (low, high) = super::watermarks(consumer, topic, partition)?;
                Some(Offsets {
                    partition,
                    committed,
                    low,
                    high,
                })
            })
            .collect();
        self.observe(&offsets, now);
    }

    /// Keeps, of the partitions not held, those with messages past their committed offset.
    fn observe(&mut self, offsets: &[Offsets], now: Instant) {
        self.seen
            .retain(|p, _| offsets.iter().any(|o| o.partition == *p));
        self.unread.clear();
        for o in offsets {
            let at = o.committed.unwrap_or(o.low).max(o.low);
            let w = self.seen.entry(o.partition).or_insert(Watch {
                committed: at,
                since: now,
                moved: false,
            });
            if w.committed != at {
                *w = Watch {
                    committed: at,
                    since: now,
                    moved: true,
                };
            }
            // One message past the committed offset may be a transaction's commit marker,
            // which a reader steps over without committing past it.
            if o.high - at > 1 {
                self.unread.push(Unread {
                    partition: o.partition,
                    messages: (o.high - at) as u64,
                    still_for: now.duration_since(w.since),
                    moved: w.moved,
                });
            }
        }
    }

    /// Unread partitions to wait for: not seen moving yet, or still for longer than a live
    /// reader would be.
    pub(super) fn waited_for(&self) -> impl Iterator<Item = &Unread> {
        self.unread
            .iter()
            .filter(|u| !u.moved || u.still_for >= self.live_within)
    }

    /// Partitions nobody has read for `orphaned_after`: a rejoin is due. (A rejoin restarts
    /// every clock, so there is at most one per `orphaned_after` and the group settles in
    /// between.)
    pub(super) fn due(&self) -> Vec<Unread> {
        self.unread
            .iter()
            .filter(|u| u.still_for >= self.orphaned_after)
            .copied()
            .collect()
    }

    /// A rejoin starts the clocks afresh; what is unread is still waited for.
    pub(super) fn rejoined(&mut self, now: Instant) {
        for w in self.seen.values_mut() {
            w.since = now;
        }
    }
}

const TIMEOUT: Duration = Duration::from_secs(5);

/// The group's committed offset (`None`: none yet) of each partition of `topic` not `held`.
fn committed_elsewhere<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    held: &[i32],
) -> Option<Vec<(i32, Option<i64>)>> {
    let meta = consumer.fetch_metadata(Some(topic), TIMEOUT).ok()?;
    let mut tpl = TopicPartitionList::new();
    for t in meta.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions().iter().filter(|p| !held.contains(&p.id())) {
            tpl.add_partition(topic, p.id());
        }
    }
    if tpl.count() == 0 {
        return Some(Vec::new());
    }
    let committed = consumer.committed_offsets(tpl, TIMEOUT).ok()?;
    Some(
        committed
            .elements_for_topic(topic)
            .iter()
            .map(|e| {
                let off = match e.offset() {
                    Offset::Offset(n) if n >= 0 => Some(n),
                    _ => None,
                };
                (e.partition(), off)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(partition: i32, committed: Option<i64>, high: i64) -> Offsets {
        Offsets {
            partition,
            committed,
            low: 0,
            high,
        }
    }

    fn parts<'a>(u: impl Iterator<Item = &'a Unread>) -> Vec<i32> {
        u.map(|u| u.partition).collect()
    }

    #[test]
    fn a_partition_read_by_someone_is_not_waited_for_and_one_left_alone_gets_a_rejoin() {
        let s = Duration::from_secs;
        // Commits every second, a dead member's session of 6 s: live within 3 s,
        // orphaned after 9 s plus the margin.
        let mut o = Orphans::new(s(1), s(6));
        let t0 = Instant::now();
        // 0 is read to its end, 1 is behind, 2 has only a commit marker left, 3 has
        // nothing committed yet.
        o.observe(
            &[
                at(0, Some(100), 100),
                at(1, Some(10), 100),
                at(2, Some(99), 100),
                at(3, None, 50),
            ],
            t0,
        );
        assert_eq!(parts(o.waited_for()), [1, 3], "unknown yet: waited for");
        assert!(o.due().is_empty());
        // 1 moves (a live reader), 3 does not.
        o.observe(&[at(1, Some(40), 100), at(3, None, 50)], t0 + s(2));
        assert_eq!(parts(o.waited_for()), [3]);
        // 1 still moves within its commit intervals; 3 has been still for 9 s plus the
        // margin.
        let t = t0 + s(9) + ORPHAN_MARGIN;
        o.observe(&[at(1, Some(70), 100), at(3, None, 50)], t0 + s(4));
        o.observe(&[at(1, Some(70), 100), at(3, None, 50)], t - s(1));
        assert!(o.due().is_empty(), "not yet");
        o.observe(&[at(1, Some(70), 100), at(3, None, 50)], t);
        assert_eq!(parts(o.waited_for()), [1, 3], "1 has been still too long");
        let due = o.due();
        assert_eq!(parts(due.iter()), [3], "1 moved 5 s after 3 was first seen");
        assert_eq!(due[0].messages, 50);
        // After a rejoin the clocks start over (the partitions are still waited for), and
        // the next rejoin waits its turn.
        o.rejoined(t);
        assert_eq!(parts(o.waited_for()), [1, 3]);
        o.observe(&[at(3, None, 50)], t + s(3));
        o.observe(&[at(3, None, 50)], t + s(8));
        assert!(o.due().is_empty(), "too soon after the last rejoin");
        let later = t + s(9) + ORPHAN_MARGIN;
        o.observe(&[at(3, None, 50)], later);
        assert_eq!(parts(o.due().iter()), [3]);
        // A partition that came to this member leaves the watch.
        o.observe(&[], later + s(1));
        assert!(o.unread.is_empty() && o.seen.is_empty());
    }
}
