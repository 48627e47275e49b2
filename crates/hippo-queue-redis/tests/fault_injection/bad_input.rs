//! Scenario 6: garbage and short records in a waiting list (review Q6a, Q12, I2), and
//! a task output over the codec's 64 MiB limit (review Q5).

use std::time::{Duration, Instant};

use hippo_queue_core::backend::prelude::*;
use hippo_queue_core::{SendOptions, TaskState};

use crate::harness::{
    Big, Rng, Row, Sampler, Scene, WorkerCfg, heavy, light, note, send_work, wait_final,
};

/// Records a foreign writer (or corruption) could leave in a waiting list.
pub fn garbage_records() -> Vec<Vec<u8>> {
    let mut prio200 = vec![200u8, 3, 0, 0, 4];
    prio200.extend_from_slice(b"bad1");
    prio200.extend_from_slice(b"M\xc0");
    vec![
        b"\x00\x00\x00\x00".to_vec(),
        b"ab".to_vec(),
        Rng::new(42).bytes(64),
        prio200,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_short_records_in_a_waiting_list() {
    let _machine = light().await;
    let scenario = "garbage records in hq:{default}:w0";
    let scene = Scene::start(None).await;
    for rec in garbage_records() {
        scene
            .server
            .command_bytes(&[b"RPUSH", b"hq:{default}:w0", &rec])
            .expect("RPUSH garbage");
    }
    let ids = send_work(&scene.app, (0..20).map(|_| (10, SendOptions::new()))).await;
    let cfg = WorkerCfg::new(4, 4);
    let sampler = Sampler::start(&scene.url);
    let worker = cfg.builder(&scene.app).start().await.expect("worker");
    let finals = wait_final(
        &scene.backend,
        &ids,
        Duration::from_secs(10),
        Duration::from_secs(30),
    )
    .await;
    let held = sampler.finish().await;
    let stats = scene
        .backend
        .queue_stats(&["default".to_string()])
        .await
        .expect("stats")
        .remove(0);
    worker.kill();
    let execs = scene.counters.execs().await;
    let row = Row::new(scenario, &ids, &finals, &execs, held, cfg.window()).note(format!(
        "afterwards: waiting {}, leased {}, dead letters {}",
        stats.waiting(),
        stats.reserved,
        stats.dead_letter
    ));
    row.print();
    row.assert_all_success_within_window();
    row.assert_no_task_ran_twice("good messages ran twice");
    assert_eq!(
        stats.reserved, 0,
        "{scenario}: {} messages stay leased to an idle worker",
        stats.reserved
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_of_65_mib_fails_and_the_worker_goes_on() {
    // Encoding 65 MiB in a debug build, possibly again and again, is CPU work.
    let _machine = heavy().await;
    let scenario = "task output of 65 MiB";
    let scene = Scene::start(None).await;
    let cfg = WorkerCfg::new(2, 2);
    let sampler = Sampler::start(&scene.url);
    let worker = cfg.builder(&scene.app).start().await.expect("worker");
    let big = scene
        .app
        .delay::<Big>(65 * 1024 * 1024)
        .await
        .expect("send")
        .id()
        .to_string();
    let big_final = wait_final(
        &scene.backend,
        std::slice::from_ref(&big),
        Duration::from_secs(30),
        Duration::from_secs(30),
    )
    .await;
    note(
        scenario,
        format!("big task final: {}", !big_final.is_empty()),
    );
    let t = Instant::now();
    let small = send_work(&scene.app, (0..5).map(|_| (10, SendOptions::new()))).await;
    let small_final = wait_final(
        &scene.backend,
        &small,
        Duration::from_secs(10),
        Duration::from_secs(10),
    )
    .await;
    let small_secs = t.elapsed();
    let held = sampler.finish().await;
    let in_flight = worker.stats().in_flight;
    worker.kill();
    let mut ids = vec![big.clone()];
    ids.extend(small.iter().cloned());
    let mut finals = big_final.clone();
    finals.extend(small_final.clone());
    let execs = scene.counters.execs().await;
    let big_meta = big_final.get(&big);
    let big_desc = match big_meta {
        None => "no final record".to_string(),
        Some(m) => format!(
            "{} {}",
            m.state,
            m.error
                .as_ref()
                .map(|e| format!("{}: {}", e.kind, e.message))
                .unwrap_or_default()
        ),
    };
    let row = Row::new(scenario, &ids, &finals, &execs, held, cfg.window()).note(format!(
        "big task: {big_desc}; {} of 5 later tasks done within {small_secs:.1?}; worker in_flight {in_flight}",
        small_final.len()
    ));
    row.print();

    let m = big_meta.unwrap_or_else(|| {
        panic!("{scenario}: no final record for the 65 MiB task (worker wedged retrying it?)")
    });
    assert_eq!(m.state, TaskState::Failure, "{scenario}: {big_desc}");
    let text = m
        .error
        .as_ref()
        .map(|e| format!("{} {}", e.kind, e.message).to_lowercase())
        .unwrap_or_default();
    assert!(
        ["size", "large", "limit", "exceed"]
            .iter()
            .any(|w| text.contains(w)),
        "{scenario}: the FAILURE does not name the reason: {big_desc}"
    );
    assert_eq!(
        small_final.len(),
        5,
        "{scenario}: only {} of 5 later tasks finished within 10 s",
        small_final.len()
    );
}
