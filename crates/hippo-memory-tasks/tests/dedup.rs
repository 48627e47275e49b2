//! deduplication_task on both stores: a generated set with known groups, the
//! survivor's fields, idempotence, dry runs and bad arguments.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use common::*;
use hippo_memory_tasks::embed::HashEmbedder;
use hippo_memory_tasks::similarity::dot;
use hippo_memory_tasks::tasks::{DeduplicationArgs, DeduplicationTask, MemoryServices};

/// 120 unique memories: 30 with 1-2 exact copies, 30 with 1-2 near copies (case and
/// punctuation, a typo, a filler word), 60 alone.
fn generated(
    user: &str,
) -> (
    Vec<hippo_memory_tasks::model::Memory>,
    Vec<BTreeSet<String>>,
) {
    let bases = unique_sentences(120, 7);
    let mut memories = Vec::new();
    let mut truth = Vec::new();
    for (k, text) in bases.iter().enumerate() {
        let mut group = BTreeSet::new();
        let m = memory(user, text, 10, 1);
        group.insert(m.id.clone());
        memories.push(m);
        let copies = 1 + k % 2;
        for c in 0..copies {
            let copy = match k {
                0..30 => text.clone(),
                30..60 => near_copy(text, k + c),
                _ => break,
            };
            let m = memory(user, &copy, 5, 2);
            group.insert(m.id.clone());
            memories.push(m);
        }
        truth.push(group);
    }
    (memories, truth)
}

fn pairs_of(groups: &[BTreeSet<String>]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for g in groups {
        let v: Vec<&String> = g.iter().collect();
        for i in 0..v.len() {
            for j in i + 1..v.len() {
                out.insert((v[i].clone(), v[j].clone()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_finds_known_groups_and_removes_no_unique_memory() {
    for b in backends().await {
        let user = "gen";
        let (memories, truth) = generated(user);
        // how separable the set is with the default embedder
        let e = HashEmbedder::default();
        let vec_of: HashMap<&str, Vec<f32>> = memories
            .iter()
            .map(|m| (m.id.as_str(), e.embed_one(&m.text)))
            .collect();
        let group_of: HashMap<&str, usize> = truth
            .iter()
            .enumerate()
            .flat_map(|(g, s)| s.iter().map(move |id| (id.as_str(), g)))
            .collect();
        let (mut min_dup, mut max_other) = (1.0f32, -1.0f32);
        for a in &memories {
            for c in &memories {
                if a.id < c.id {
                    let s = dot(&vec_of[a.id.as_str()], &vec_of[c.id.as_str()]);
                    if group_of[a.id.as_str()] == group_of[c.id.as_str()] {
                        min_dup = min_dup.min(s);
                    } else {
                        max_other = max_other.max(s);
                    }
                }
            }
        }
        for m in &memories {
            b.store.put(m).await.unwrap();
        }
        let services = MemoryServices::new(b.store.clone());
        let app = app(&services);
        let out = ok(
            run::<DeduplicationTask>(&app, DeduplicationArgs::new(user)).await,
            b.label,
        );

        let predicted: Vec<BTreeSet<String>> = out
            .groups
            .iter()
            .map(|g| {
                std::iter::once(g.survivor_id.clone())
                    .chain(g.duplicate_ids.iter().cloned())
                    .collect()
            })
            .collect();
        let (want, got) = (pairs_of(&truth), pairs_of(&predicted));
        let hit = want.intersection(&got).count() as f64;
        let precision = if got.is_empty() {
            1.0
        } else {
            hit / got.len() as f64
        };
        let recall = hit / want.len() as f64;
        println!(
            "[{}] {} memories, {} true duplicate pairs: precision {precision:.3}, recall {recall:.3}; \
             lowest duplicate similarity {min_dup:.3}, highest other {max_other:.3}",
            b.label,
            memories.len(),
            want.len()
        );
        assert_eq!(precision, 1.0, "[{}] a unique memory was merged", b.label);
        assert_eq!(recall, 1.0, "[{}] a duplicate was missed", b.label);
        let expected_dups: usize = truth.iter().map(|g| g.len() - 1).sum();
        assert_eq!(out.duplicates_found as usize, expected_dups);
        assert_eq!(out.duplicates_merged as usize, expected_dups);
        // the duplicates had no vector and move whole into their survivors' history:
        // reported as it is, next to nothing
        assert!(out.space_saved_mb.abs() < 0.1, "{}", out.space_saved_mb);
        assert_eq!(out.memories_scanned as usize, memories.len());

        // exactly one memory of each true group remains: nothing unique was removed
        let left = all(b.store.as_ref(), user).await;
        assert_eq!(left.len(), truth.len(), "[{}]", b.label);
        for g in &truth {
            assert_eq!(
                left.iter().filter(|m| g.contains(&m.id)).count(),
                1,
                "[{}] group {g:?}",
                b.label
            );
        }
        assert!(
            left.iter()
                .all(|m| m.embed_model.as_deref() == Some("hippo-hash-384-v1"))
        );

        // a second run changes nothing
        let before = all(b.store.as_ref(), user).await;
        let again = ok(
            run::<DeduplicationTask>(&app, DeduplicationArgs::new(user)).await,
            b.label,
        );
        assert_eq!(
            (
                again.duplicates_found,
                again.duplicates_merged,
                again.embeddings_updated
            ),
            (0, 0, 0)
        );
        assert_eq!(all(b.store.as_ref(), user).await, before, "[{}]", b.label);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_survivor_keeps_tags_importance_and_access_counts() {
    for b in backends().await {
        let mut a = memory("u", "Nora booked a train to Porto for Friday.", 20, 4);
        a.tags = vec!["travel".into()];
        a.importance = 7.0;
        let mut c = memory("u", "nora booked a train to porto for friday", 3, 5);
        c.tags = vec!["travel".into(), "rail".into()];
        c.importance = 9.0;
        let mut d = memory("u", "Nora booked a train to Porto for Friday!", 1, 1);
        d.tags = vec!["porto".into()];
        let lone = memory("u", "Omar repaired the garden shed roof", 2, 0);
        for m in [&a, &c, &d, &lone] {
            b.store.put(m).await.unwrap();
        }
        let app = app(&MemoryServices::new(b.store.clone()));
        let out = ok(
            run::<DeduplicationTask>(&app, DeduplicationArgs::new("u")).await,
            b.label,
        );
        assert_eq!(out.groups.len(), 1);
        // the most important memory survives
        assert_eq!(out.groups[0].survivor_id, c.id);
        let s = b.store.get("u", &c.id).await.unwrap().unwrap();
        assert_eq!(s.tags, ["travel", "rail", "porto"]);
        assert_eq!(s.importance, 9.0);
        assert_eq!(s.access_count, 10);
        assert_eq!(s.metadata_list("merged_from").len(), 2);
        assert!(b.store.get("u", &a.id).await.unwrap().is_none());
        assert!(b.store.get("u", &lone.id).await.unwrap().is_some());

        // a user with one memory: never a duplicate of itself
        b.store
            .put(&memory("solo", "only memory", 1, 0))
            .await
            .unwrap();
        let out = ok(
            run::<DeduplicationTask>(&app, DeduplicationArgs::new("solo")).await,
            b.label,
        );
        assert_eq!(out.duplicates_found, 0);
        assert_eq!(b.store.count_by_user("solo").await.unwrap(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_dry_run_changes_nothing() {
    for b in backends().await {
        for t in [
            "Maya ordered an electric kettle",
            "Maya ordered an electric kettle.",
        ] {
            b.store.put(&memory("u", t, 1, 0)).await.unwrap();
        }
        let before = all(b.store.as_ref(), "u").await;
        let app = app(&MemoryServices::new(b.store.clone()));
        let mut args = DeduplicationArgs::new("u");
        args.dry_run = true;
        let dry = ok(run::<DeduplicationTask>(&app, args).await, b.label);
        assert!(dry.dry_run);
        assert_eq!(all(b.store.as_ref(), "u").await, before);
        // it reported exactly what a real run then does
        let real = ok(
            run::<DeduplicationTask>(&app, DeduplicationArgs::new("u")).await,
            b.label,
        );
        assert_eq!((dry.duplicates_found, dry.duplicates_merged), (1, 1));
        assert_eq!(dry.groups, real.groups, "[{}]", b.label);
        assert_eq!(
            (
                dry.duplicates_merged,
                dry.embeddings_updated,
                dry.space_saved_mb
            ),
            (
                real.duplicates_merged,
                real.embeddings_updated,
                real.space_saved_mb
            ),
            "[{}]",
            b.label
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_bad_arguments_are_rejected() {
    for b in backends().await {
        b.store.put(&memory("u", "something", 1, 0)).await.unwrap();
        let app = app(&MemoryServices::new(b.store.clone()));
        rejected(
            run::<DeduplicationTask>(&app, DeduplicationArgs::new("nobody")).await,
            "unknown user \"nobody\"",
            b.label,
        );
        for t in [1.5, -0.1, f64::NAN] {
            let mut args = DeduplicationArgs::new("u");
            args.similarity_threshold = Some(t);
            rejected(
                run::<DeduplicationTask>(&app, args).await,
                "similarity_threshold must be between 0 and 1",
                b.label,
            );
        }
        rejected(
            run::<DeduplicationTask>(&app, DeduplicationArgs::new("")).await,
            "user_id is empty",
            b.label,
        );
    }
}

#[test]
fn generated_set_shape() {
    let (m, truth) = generated("x");
    let sizes: BTreeMap<usize, usize> = truth.iter().fold(BTreeMap::new(), |mut acc, g| {
        *acc.entry(g.len()).or_default() += 1;
        acc
    });
    assert_eq!(m.len(), truth.iter().map(|g| g.len()).sum::<usize>());
    assert_eq!(sizes[&1], 60);
}
