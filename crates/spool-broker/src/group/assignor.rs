//! Server-side assignors of the KIP-848 consumer protocol: `uniform` (sticky and balanced,
//! Kafka's default) and `range` (contiguous ranges per topic).
//!
//! Both are pure: members' subscriptions, the topics' partition counts and the previous
//! target assignment in; the new target assignment out. Deterministic (ordered maps).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Partitions per topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// The assignors this broker implements; the first is the default.
pub const ASSIGNORS: [&str; 2] = ["uniform", "range"];

/// What an assignor sees of one member.
pub struct AssignorMember<'a> {
    /// Topic ids the member subscribes to (only topics that exist).
    pub topics: BTreeSet<Uuid>,
    /// Its current target assignment, for stickiness.
    pub previous: Option<&'a Assignment>,
}

/// Runs the named assignor. `partitions` maps every subscribed topic to its partition count.
pub fn assign(
    name: &str,
    members: &BTreeMap<String, AssignorMember<'_>>,
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    match name {
        "range" => range(members, partitions),
        _ => uniform(members, partitions),
    }
}

/// Per topic, the subscribed members (by id order) get contiguous ranges; the first
/// `partitions % members` get one extra.
fn range(
    members: &BTreeMap<String, AssignorMember<'_>>,
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for (&topic, &count) in partitions {
        let subs: Vec<&String> = members
            .iter()
            .filter(|(_, m)| m.topics.contains(&topic))
            .map(|(id, _)| id)
            .collect();
        if subs.is_empty() || count <= 0 {
            continue;
        }
        let n = subs.len() as i32;
        let (quota, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, m) in subs.into_iter().enumerate() {
            let take = quota + i32::from((i as i32) < extra);
            if take > 0 {
                let a = out.get_mut(m).expect("member listed");
                a.entry(topic).or_default().extend(next..next + take);
            }
            next += take;
        }
    }
    out
}

/// Balanced and sticky: every member keeps what it had (up to its fair share), then the
/// free partitions go, one at a time, to the least loaded member subscribed to the topic.
fn uniform(
    members: &BTreeMap<String, AssignorMember<'_>>,
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    let mut load: BTreeMap<&String, usize> = members.keys().map(|m| (m, 0)).collect();
    // Fair share if everyone could take everything: an upper bound for keeping.
    let total: usize = partitions
        .iter()
        .filter(|(t, _)| members.values().any(|m| m.topics.contains(t)))
        .map(|(_, &c)| c.max(0) as usize)
        .sum();
    let n = members.len().max(1);
    let ceil = total.div_ceil(n);
    let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    for (id, m) in members {
        let Some(prev) = m.previous else { continue };
        for (topic, parts) in prev {
            let Some(&count) = partitions.get(topic) else {
                continue;
            };
            if !m.topics.contains(topic) {
                continue;
            }
            for &p in parts {
                if p >= count || load[id] >= ceil || !taken.insert((*topic, p)) {
                    continue;
                }
                out.get_mut(id)
                    .expect("member listed")
                    .entry(*topic)
                    .or_default()
                    .insert(p);
                *load.get_mut(id).expect("member listed") += 1;
            }
        }
    }
    for (&topic, &count) in partitions {
        for p in 0..count.max(0) {
            if taken.contains(&(topic, p)) {
                continue;
            }
            let best = members
                .iter()
                .filter(|(_, m)| m.topics.contains(&topic))
                .map(|(id, _)| id)
                .min_by_key(|id| load[id]);
            if let Some(id) = best {
                out.get_mut(id)
                    .expect("member listed")
                    .entry(topic)
                    .or_default()
                    .insert(p);
                *load.get_mut(id).expect("member listed") += 1;
                taken.insert((topic, p));
            }
        }
    }
    // Homogeneous groups can still be off by more than one after keeping (members that kept
    // their old share while new ones arrived): move partitions from the most to the least
    // loaded while that helps and the receiver subscribes to the topic.
    while let (Some((&max_id, &max)), Some((&min_id, &min))) = (
        load.iter().max_by_key(|(_, l)| **l),
        load.iter().min_by_key(|(_, l)| **l),
    ) {
        if max <= min + 1 {
            break;
        }
        let receiver = &members[min_id].topics;
        let from = &out[max_id];
        let Some((topic, p)) = from
            .iter()
            .filter(|(t, _)| receiver.contains(t))
            .find_map(|(t, ps)| ps.iter().next_back().map(|p| (*t, *p)))
        else {
            break;
        };
        let src = out.get_mut(max_id).expect("member listed");
        let ps = src.get_mut(&topic).expect("topic listed");
        ps.remove(&p);
        if ps.is_empty() {
            src.remove(&topic);
        }
        out.get_mut(min_id)
            .expect("member listed")
            .entry(topic)
            .or_default()
            .insert(p);
        *load.get_mut(max_id).expect("member listed") -= 1;
        *load.get_mut(min_id).expect("member listed") += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn members<'a>(ids: &[&str], topics: &[Uuid]) -> BTreeMap<String, AssignorMember<'a>> {
        ids.iter()
            .map(|id| {
                (
                    id.to_string(),
                    AssignorMember {
                        topics: topics.iter().copied().collect(),
                        previous: None,
                    },
                )
            })
            .collect()
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(|p| p.len()).sum()
    }

    #[test]
    fn range_splits_contiguously() {
        let parts = BTreeMap::from([(t(1), 5)]);
        let out = assign("range", &members(&["a", "b"], &[t(1)]), &parts);
        assert_eq!(out["a"][&t(1)], BTreeSet::from([0, 1, 2]));
        assert_eq!(out["b"][&t(1)], BTreeSet::from([3, 4]));
    }

    #[test]
    fn uniform_balances_and_sticks() {
        let parts = BTreeMap::from([(t(1), 4), (t(2), 3)]);
        let first = assign("uniform", &members(&["a"], &[t(1), t(2)]), &parts);
        assert_eq!(count(&first["a"]), 7);
        let mut two = members(&["a", "b"], &[t(1), t(2)]);
        two.get_mut("a").unwrap().previous = Some(&first["a"]);
        let out = assign("uniform", &two, &parts);
        let (ca, cb) = (count(&out["a"]), count(&out["b"]));
        assert_eq!(ca + cb, 7);
        assert!(ca.abs_diff(cb) <= 1, "{ca} vs {cb}");
        // Everything a keeps it had before; nothing is assigned twice.
        for (topic, ps) in &out["a"] {
            assert!(ps.is_subset(&first["a"][topic]));
            if let Some(b) = out["b"].get(topic) {
                assert!(ps.is_disjoint(b));
            }
        }
    }

    #[test]
    fn uniform_respects_subscriptions() {
        let parts = BTreeMap::from([(t(1), 2), (t(2), 2)]);
        let mut ms = members(&["a", "b"], &[t(1)]);
        ms.get_mut("b").unwrap().topics = BTreeSet::from([t(2)]);
        let out = assign("uniform", &ms, &parts);
        assert_eq!(out["a"].keys().collect::<Vec<_>>(), vec![&t(1)]);
        assert_eq!(out["b"].keys().collect::<Vec<_>>(), vec![&t(2)]);
    }
}
