//! expire_memories_task on both stores: many users, more expired memories than one
//! page, strict expiry, nothing left behind.

mod common;

use chrono::{Duration, Utc};
use common::*;
use hippo_memory_tasks::store::{ChangeSet, PageRequest};
use hippo_memory_tasks::tasks::{ExpirationArgs, ExpireMemoriesTask, MemoryServices};

const USERS: usize = 40;
const PER_USER: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiration_across_many_users_and_pages() {
    for b in backends().await {
        let now = Utc::now();
        let mut expired = 0;
        for u in 0..USERS {
            let user = format!("user-{u:02}");
            let mut put = Vec::new();
            for k in 0..PER_USER {
                let mut m = memory(&user, &format!("memory {k} of {user}"), 3, 0);
                m.embedding = Some(vec![0.5; 384]);
                match k % 3 {
                    0 | 1 => {
                        m.expires_at = Some(now - Duration::seconds(60 + k as i64));
                        expired += 1;
                    }
                    _ => m.expires_at = Some(now + Duration::hours(1)),
                }
                put.push(m);
            }
            // one user keeps memories without any expiry
            if u == 0 {
                put.push(memory(&user, "forever", 1, 0));
            }
            b.store
                .apply(
                    &user,
                    ChangeSet {
                        put,
                        delete: vec![],
                        ..ChangeSet::default()
                    },
                )
                .await
                .unwrap();
        }
        assert!(expired > 500, "more than one page of expired memories");

        let app = app(&MemoryServices::new(b.store.clone()));
        let out = ok(
            run::<ExpireMemoriesTask>(&app, ExpirationArgs { user_id: None }).await,
            b.label,
        );
        assert_eq!(out.expired_count, expired as u64, "[{}]", b.label);
        assert_eq!(out.users_affected, USERS as u64);
        for u in 0..USERS {
            let user = format!("user-{u:02}");
            let left = all(b.store.as_ref(), &user).await;
            let want = PER_USER / 3 + usize::from(u == 0);
            assert_eq!(left.len(), want, "[{}] {user}", b.label);
            assert!(left.iter().all(|m| !m.is_expired(Utc::now())));
        }
        // the index holds only what is left to expire later
        let later = b
            .store
            .expired(now + Duration::hours(2), None, &PageRequest::first(10_000))
            .await
            .unwrap();
        assert_eq!(later.items.len(), USERS * PER_USER / 3);
        assert!(later.next.is_none());

        if let Some(server) = &b.server {
            // nothing of the deleted memories is left in Redis
            let client = redis::Client::open(server.url(0)).unwrap();
            let mut c = client.get_multiplexed_async_connection().await.unwrap();
            let docs: usize = redis::cmd("HLEN")
                .arg("t:mem:{user-05}:doc")
                .query_async(&mut c)
                .await
                .unwrap();
            let vecs: usize = redis::cmd("HLEN")
                .arg("t:mem:{user-05}:vec")
                .query_async(&mut c)
                .await
                .unwrap();
            let index: usize = redis::cmd("ZCARD")
                .arg("t:mem:expiry")
                .query_async(&mut c)
                .await
                .unwrap();
            assert_eq!(
                (docs, vecs, index),
                (PER_USER / 3, PER_USER / 3, USERS * PER_USER / 3)
            );
        }

        // a second run finds nothing
        let again = ok(
            run::<ExpireMemoriesTask>(&app, ExpirationArgs { user_id: None }).await,
            b.label,
        );
        assert_eq!(again.expired_count, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiration_of_one_user_is_strict_and_leaves_others() {
    for b in backends().await {
        let now = Utc::now();
        for user in ["a", "b"] {
            let mut gone = memory(user, "expired", 1, 0);
            gone.expires_at = Some(now - Duration::milliseconds(5));
            let mut soon = memory(user, "not yet", 1, 0);
            soon.expires_at = Some(now + Duration::seconds(30));
            b.store.put(&gone).await.unwrap();
            b.store.put(&soon).await.unwrap();
        }
        let app = app(&MemoryServices::new(b.store.clone()));
        let out = ok(
            run::<ExpireMemoriesTask>(
                &app,
                ExpirationArgs {
                    user_id: Some("a".into()),
                },
            )
            .await,
            b.label,
        );
        assert_eq!((out.expired_count, out.users_affected), (1, 1));
        assert_eq!(b.store.count_by_user("a").await.unwrap(), 1);
        assert_eq!(b.store.count_by_user("b").await.unwrap(), 2);
        rejected(
            run::<ExpireMemoriesTask>(
                &app,
                ExpirationArgs {
                    user_id: Some("zed".into()),
                },
            )
            .await,
            "unknown user",
            b.label,
        );
        // the last memory of a user gone: the user is gone too
        let mut last = memory("c", "short lived", 1, 0);
        last.expires_at = Some(now - Duration::seconds(1));
        b.store.put(&last).await.unwrap();
        ok(
            run::<ExpireMemoriesTask>(&app, ExpirationArgs { user_id: None }).await,
            b.label,
        );
        let users = b.store.list_users(&PageRequest::first(10)).await.unwrap();
        assert_eq!(users.items, ["a", "b"], "[{}]", b.label);
    }
}
