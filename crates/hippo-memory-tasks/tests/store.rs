//! The MemoryStore contract on both stores: pagination with cursors, the expiry index,
//! atomic change sets, migration records, rules; the Redis key layout.

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::*;
use hippo_memory_tasks::model::{Migration, MigrationStatus, ProceduralRule};
use hippo_memory_tasks::store::{ChangeSet, PageRequest, StoreError};

async fn pages<T>(
    mut read: impl AsyncFnMut(PageRequest) -> hippo_memory_tasks::store::Page<T>,
    size: usize,
) -> (Vec<T>, usize) {
    let mut out = Vec::new();
    let mut page = PageRequest::first(size);
    let mut n = 0;
    loop {
        let p = read(page.clone()).await;
        n += 1;
        assert!(p.items.len() <= size);
        out.extend(p.items);
        match p.next {
            Some(c) => page = page.after(c),
            None => return (out, n),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_contract() {
    for b in backends().await {
        let s = b.store.as_ref();
        // 23 memories of one user, 7 users
        let mut ids = Vec::new();
        for k in 0..23 {
            let mut m = memory("alice", &format!("note {k}"), 1, 0);
            m.embedding = Some(vec![k as f32, -1.5, 0.25]);
            ids.push(m.id.clone());
            s.put(&m).await.unwrap();
        }
        for u in 0..6 {
            s.put(&memory(&format!("user{u}"), "x", 1, 0))
                .await
                .unwrap();
        }
        ids.sort();
        let (got, n) = pages(async |p| s.list_by_user("alice", &p).await.unwrap(), 5).await;
        assert_eq!(n, 5, "[{}]", b.label);
        assert_eq!(got.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), ids);
        let m0 = s.get("alice", &got[0].id).await.unwrap().unwrap();
        assert_eq!(m0, got[0], "vectors round-trip exactly");
        let (users, _) = pages(async |p| s.list_users(&p).await.unwrap(), 3).await;
        assert_eq!(users.len(), 7);
        assert!(users.windows(2).all(|w| w[0] < w[1]));
        assert!(s.user_exists("alice").await.unwrap());
        assert!(!s.user_exists("nobody").await.unwrap());

        // a change set: one write and two deletions at once
        let mut changed = got[0].clone();
        changed.text = "changed".into();
        let n = s
            .apply(
                "alice",
                ChangeSet {
                    put: vec![changed],
                    delete: vec![got[1].id.clone(), got[2].id.clone(), "missing".into()],
                    ..ChangeSet::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(s.count_by_user("alice").await.unwrap(), 21);
        assert_eq!(
            s.get("alice", &got[0].id).await.unwrap().unwrap().text,
            "changed"
        );
        // a memory of another user is refused
        assert!(s.put(&memory("bob", "x", 1, 0)).await.is_ok());
        let wrong = ChangeSet {
            put: vec![memory("bob", "y", 1, 0)],
            delete: vec![],
            ..ChangeSet::default()
        };
        assert!(s.apply("alice", wrong).await.is_err());

        // the expiry index: ties on one millisecond, pages of 4, strict time bound
        let t0 = Utc.timestamp_millis_opt(1_700_000_000_000).unwrap();
        for k in 0..10 {
            let mut m = memory("exp", &format!("e{k}"), 1, 0);
            m.expires_at = Some(t0 + Duration::milliseconds((k / 3) as i64));
            s.put(&m).await.unwrap();
        }
        let (all_exp, n) = pages(
            async |p| {
                s.expired(t0 + Duration::seconds(1), None, &p)
                    .await
                    .unwrap()
            },
            4,
        )
        .await;
        assert_eq!((all_exp.len(), n), (10, 3), "[{}]", b.label);
        let mut seen: Vec<&str> = all_exp.iter().map(|e| e.memory_id.as_str()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 10, "no entry twice");
        assert!(
            all_exp
                .windows(2)
                .all(|w| w[0].expires_at_ms <= w[1].expires_at_ms)
        );
        let (one_user, _) = pages(
            async |p| {
                s.expired(t0 + Duration::seconds(1), Some("exp"), &p)
                    .await
                    .unwrap()
            },
            4,
        )
        .await;
        assert_eq!(one_user.len(), 10);
        let early = s
            .expired(
                t0 + Duration::milliseconds(1),
                None,
                &PageRequest::first(100),
            )
            .await
            .unwrap();
        assert_eq!(
            early.items.len(),
            6,
            "entries at or before the bound's millisecond"
        );
        // an expiry removed by an update leaves the index
        let mut keep = s.get("exp", &all_exp[0].memory_id).await.unwrap().unwrap();
        keep.expires_at = None;
        s.put(&keep).await.unwrap();
        let (left, _) = pages(
            async |p| {
                s.expired(t0 + Duration::seconds(1), None, &p)
                    .await
                    .unwrap()
            },
            4,
        )
        .await;
        assert_eq!(left.len(), 9);

        // migration records keep cancellation apart from progress
        let mut m = Migration::new(Some("a".into()), "b", 384);
        s.create_migration(&m).await.unwrap();
        assert!(s.create_migration(&m).await.is_err());
        m.status = MigrationStatus::InProgress;
        s.save_migration(&m).await.unwrap();
        s.cancel_migration(&m.id).await.unwrap();
        m.migrated_count = 32;
        s.save_migration(&m).await.unwrap();
        let back = s.get_migration(&m.id).await.unwrap().unwrap();
        assert!(
            back.cancel_requested,
            "a progress write does not undo a cancel"
        );
        assert_eq!(back.migrated_count, 32);
        assert_eq!(back.status, MigrationStatus::InProgress);
        assert!(s.get_migration("nope").await.unwrap().is_none());
        assert!(s.cancel_migration("nope").await.unwrap().is_none());

        // rules
        let rules: Vec<ProceduralRule> = (0..7)
            .map(|k| ProceduralRule::new("r", format!("rule {k}")))
            .collect();
        s.put_rules("r", &rules).await.unwrap();
        let (got, _) = pages(async |p| s.list_rules("r", &p).await.unwrap(), 3).await;
        assert_eq!(got.len(), 7);
        assert_eq!(
            s.delete_rules("r", &[rules[0].id.clone(), "x".into()])
                .await
                .unwrap(),
            1
        );
        assert!(
            s.put_rules("r", &[ProceduralRule::new("other", "x")])
                .await
                .is_err()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_layout_hash_tags_and_little_endian_vectors() {
    let b = backends().await.pop().unwrap();
    let server = b.server.as_ref().unwrap();
    let mut m = memory("ada", "vector", 1, 0);
    m.embedding = Some(vec![1.0, -2.5]);
    m.expires_at = Some(Utc::now() + Duration::hours(1));
    b.store.put(&m).await.unwrap();
    let client = redis::Client::open(server.url(0)).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(
        keys,
        [
            "t:mem:expiry",
            "t:mem:users",
            "t:mem:{ada}:doc",
            "t:mem:{ada}:exp",
            "t:mem:{ada}:ids",
            "t:mem:{ada}:vec",
            "t:mem:{ada}:ver"
        ]
    );
    let raw: Vec<u8> = redis::cmd("HGET")
        .arg("t:mem:{ada}:vec")
        .arg(&m.id)
        .query_async(&mut c)
        .await
        .unwrap();
    let mut want = 1.0f32.to_le_bytes().to_vec();
    want.extend((-2.5f32).to_le_bytes());
    assert_eq!(raw, want);
    let doc: String = redis::cmd("HGET")
        .arg("t:mem:{ada}:doc")
        .arg(&m.id)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(!doc.contains("-2.5"), "the JSON record carries no vector");
    // deleting the last memory removes every key
    b.store
        .delete("ada", std::slice::from_ref(&m.id))
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_conditional_on_the_versions_read() {
    for b in backends().await {
        let s = b.store.as_ref();
        let x = memory("u", "x", 1, 0);
        let y = memory("u", "y", 1, 0);
        s.put(&x).await.unwrap();
        s.put(&y).await.unwrap();
        let read = all(s, "u").await;
        assert!(
            read.iter().all(|m| m.version == 1),
            "[{}] {read:?}",
            b.label
        );
        let by_id = |id: &str| read.iter().find(|m| m.id == id).unwrap().clone();
        let (rx, ry) = (by_id(&x.id), by_id(&y.id));
        // A write from someone else bumps the version.
        let mut edited = rx.clone();
        edited.text = "edited by the user".into();
        s.put(&edited).await.unwrap();
        assert_eq!(s.get("u", &rx.id).await.unwrap().unwrap().version, 2);
        // A stale change set is refused whole: y is not written either.
        let mut stale = rx.clone();
        stale.text = "stale task copy".into();
        let mut new_y = ry.clone();
        new_y.text = "y changed".into();
        let err = s
            .apply("u", ChangeSet::new().replace(stale).replace(new_y.clone()))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { ref id } if *id == rx.id),
            "[{}] {err}",
            b.label
        );
        assert_eq!(
            s.get("u", &rx.id).await.unwrap().unwrap().text,
            "edited by the user"
        );
        assert_eq!(s.get("u", &ry.id).await.unwrap().unwrap().text, "y");
        // A deleted memory is not resurrected, and a fresh read writes.
        s.delete("u", std::slice::from_ref(&ry.id)).await.unwrap();
        assert!(s.apply("u", ChangeSet::new().replace(new_y)).await.is_err());
        assert!(s.get("u", &ry.id).await.unwrap().is_none(), "[{}]", b.label);
        let fresh = s.get("u", &rx.id).await.unwrap().unwrap();
        s.apply("u", ChangeSet::new().remove(&fresh)).await.unwrap();
        assert_eq!(s.count_by_user("u").await.unwrap(), 0, "[{}]", b.label);
        assert!(!s.user_exists("u").await.unwrap(), "[{}]", b.label);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_lease_has_one_holder_at_a_time() {
    for b in backends().await {
        let s = b.store.as_ref();
        let ttl = std::time::Duration::from_millis(300);
        assert!(s.acquire_lease("u", "a", ttl).await.unwrap());
        assert!(
            !s.acquire_lease("u", "b", ttl).await.unwrap(),
            "[{}]",
            b.label
        );
        assert!(
            s.acquire_lease("u", "a", ttl).await.unwrap(),
            "[{}] a retry of the holder",
            b.label
        );
        assert!(
            s.acquire_lease("v", "b", ttl).await.unwrap(),
            "[{}] another user",
            b.label
        );
        s.release_lease("u", "b").await.unwrap(); // not the holder: no effect
        assert!(
            !s.acquire_lease("u", "b", ttl).await.unwrap(),
            "[{}]",
            b.label
        );
        s.release_lease("u", "a").await.unwrap();
        assert!(
            s.acquire_lease("u", "b", ttl).await.unwrap(),
            "[{}]",
            b.label
        );
        // it lapses by itself
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert!(
            s.acquire_lease("u", "c", ttl).await.unwrap(),
            "[{}]",
            b.label
        );
    }
}

/// T9: a bulk import with one expiry pages through the expiry index by the cursor's
/// rank (no re-scan of the millisecond), every entry once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_pages_within_one_millisecond() {
    for b in backends().await {
        let s = b.store.as_ref();
        let at = Utc::now() - Duration::minutes(5);
        for i in 0..50 {
            let mut m = memory("u", &format!("imported {i}"), 1, 0);
            m.expires_at = Some(at);
            s.put(&m).await.unwrap();
        }
        let mut page = PageRequest::first(7);
        let mut seen = Vec::new();
        loop {
            let p = s.expired(Utc::now(), Some("u"), &page).await.unwrap();
            seen.extend(p.items.into_iter().map(|e| e.memory_id));
            match p.next {
                Some(c) => page = page.after(c),
                None => break,
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!((seen.len(), sorted.len()), (50, 50), "[{}]", b.label);
        assert_eq!(seen, sorted, "[{}] in order", b.label);
    }
}
