//! Sample data for the guide's examples: memories and procedural rules to deduplicate,
//! consolidate, summarise, compress and expire.

use chrono::Utc;
use hippo_memory_tasks::model::{Memory, MemoryType, ProceduralRule};
use hippo_memory_tasks::store::MemoryStore;

use crate::BoxError;

/// The user of the guide's examples.
pub const GUIDE_USER: &str = "user123";

fn memory(
    user: &str,
    text: &str,
    ty: MemoryType,
    days_old: i64,
    tags: &[&str],
    importance: f64,
) -> Memory {
    let mut m = Memory::new(user, text, ty);
    let at = Utc::now() - chrono::Duration::days(days_old);
    m.created_at = at;
    m.updated_at = at;
    m.tags = tags.iter().map(|t| t.to_string()).collect();
    m.importance = importance;
    m
}

/// A small, varied set of memories for one user: near-copies for deduplication,
/// close variants for consolidation, old events for summarisation and compression,
/// and expired reminders.
pub fn sample_memories(user: &str) -> Vec<Memory> {
    use MemoryType::*;
    let mut out = vec![
        // near-copies: deduplication merges each pair
        memory(
            user,
            "Prefers window seats on long flights.",
            Preference,
            3,
            &["travel"],
            6.0,
        ),
        memory(
            user,
            "prefers window seats on long flights",
            Preference,
            1,
            &["travel", "flights"],
            5.0,
        ),
        memory(
            user,
            "Allergic to peanuts and shellfish.",
            Fact,
            5,
            &["health"],
            9.0,
        ),
        memory(
            user,
            "Allergic to peanuts and shellfish!",
            Fact,
            2,
            &["health", "food"],
            8.0,
        ),
        // close variants: consolidation turns them into one memory
        memory(
            user,
            "Is learning Portuguese with an online tutor twice a week",
            Goal,
            4,
            &["languages"],
            6.0,
        ),
        memory(
            user,
            "Takes Portuguese lessons with an online tutor twice a week",
            Goal,
            2,
            &["languages", "routine"],
            5.0,
        ),
        // unique, recent
        memory(
            user,
            "Wants to run a marathon in under four hours next spring",
            Goal,
            6,
            &["sport"],
            7.0,
        ),
        memory(
            user,
            "Goes bouldering at the climbing gym on Tuesday evenings",
            Habit,
            4,
            &["sport"],
            5.0,
        ),
        memory(
            user,
            "Drinks green tea instead of coffee after lunch",
            Habit,
            1,
            &["food"],
            4.0,
        ),
        // old events: summarised into one summary, then compressed
        memory(
            user,
            "Visited Kyoto in April and loved the temples. Took hundreds of photos of the gardens.",
            Event,
            200,
            &["travel"],
            5.0,
        ),
        memory(
            user,
            "Honestly the small hotel in Kyoto was really just basically perfect, very quiet and pretty close to the station.",
            Event,
            198,
            &["travel"],
            4.0,
        ),
        memory(
            user,
            "Moved to a new apartment in Porto. The kitchen is tiny but the living room is bright.",
            Event,
            150,
            &["home"],
            6.0,
        ),
        memory(
            user,
            "Started a new job as a data engineer. The team works on card payments.",
            Event,
            120,
            &["work"],
            7.0,
        ),
        memory(
            user,
            "Adopted a rescue cat named Miso. She hides under the bed when guests come.",
            Event,
            70,
            &["pets"],
            6.0,
        ),
        memory(
            user,
            "Finished reading Dune. Wants to read the sequels over the winter holidays.",
            Event,
            45,
            &["books"],
            4.0,
        ),
    ];
    // expired reminders: the expiration task deletes them
    let mut parking = memory(
        user,
        "Parking spot B12 is reserved for the conference today",
        Context,
        1,
        &["reminder"],
        3.0,
    );
    parking.expires_at = Some(Utc::now() - chrono::Duration::hours(2));
    let mut dentist = memory(
        user,
        "Dentist appointment next Monday at 9am",
        Prospective,
        1,
        &["reminder"],
        6.0,
    );
    dentist.expires_at = Some(Utc::now() + chrono::Duration::days(6));
    out.push(parking);
    out.push(dentist);
    out
}

/// Memories of a second user, one of them expired.
pub fn other_user_memories(user: &str) -> Vec<Memory> {
    let mut code = memory(
        user,
        "Temporary door code 4711 for the office this week",
        MemoryType::Context,
        9,
        &["office"],
        2.0,
    );
    code.expires_at = Some(Utc::now() - chrono::Duration::days(2));
    vec![
        memory(
            user,
            "Plays the cello in a community orchestra",
            MemoryType::Habit,
            30,
            &["music"],
            6.0,
        ),
        code,
    ]
}

/// Procedural rules with repeats and a weak rule.
pub fn sample_rules(user: &str) -> Vec<ProceduralRule> {
    let rule = |text: &str, confidence: f64, success: f64| {
        let mut r = ProceduralRule::new(user, text);
        r.confidence = confidence;
        r.success_rate = success;
        r
    };
    vec![
        rule("Answer in English unless asked otherwise", 0.8, 0.7),
        rule("answer in English, unless asked otherwise.", 0.7, 0.5),
        rule("Keep answers short and use bullet points", 0.9, 0.8),
        rule("Greet the user by name", 0.7, 0.6),
        rule("Greet the user by name!", 0.6, 0.5),
        rule("Suggest vegetarian restaurants first", 0.75, 0.9),
    ]
}

/// Writes the sample memories and rules (for `user` and `other`) unless `user`
/// already has memories; returns how many memories were written.
pub async fn load_samples(
    store: &dyn MemoryStore,
    user: &str,
    other: &str,
) -> Result<usize, BoxError> {
    if store.user_exists(user).await? {
        return Ok(0);
    }
    let mut n = 0;
    for m in sample_memories(user)
        .into_iter()
        .chain(other_user_memories(other))
    {
        store.put(&m).await?;
        n += 1;
    }
    store.put_rules(user, &sample_rules(user)).await?;
    Ok(n)
}
