//! Simulated service days (`diarysync::simulate`) played through HTTP on each store: the
//! diary must come out with every match right (precision 1.0) and at least 98% of the
//! checks of a reservation on it (recall 0.98). The seeds are fixed; `DIARYSYNC_SIM_DAYS`
//! plays more days per seed.

use diarysync::simulate::{Target, generate, run};

use crate::helpers::{ADMIN_TOKEN, Db, LIGHTSPEED_TOKEN, setting, spawn};

const SEEDS: [u64; 3] = [1, 2, 3];

async fn seeded_service_days_come_out_as_a_host_would_write_them(db: Db) {
    let app = spawn(db).await;
    let target = Target {
        base: app.base.clone(),
        admin_token: ADMIN_TOKEN.to_owned(),
        partner: "lightspeed".to_owned(),
        partner_token: LIGHTSPEED_TOKEN.to_owned(),
    };
    let days_per_seed = u32::try_from(setting("DIARYSYNC_SIM_DAYS", 5)).unwrap_or(5);
    let days: Vec<_> = SEEDS
        .iter()
        .flat_map(|seed| (0..days_per_seed).map(move |day| generate(*seed, day)))
        .collect();
    let score = run(&target, &days).await.expect("the days play");
    println!("{score}");
    let mistakes = score.mistakes.join("\n");
    assert_eq!(score.rejected, 0, "{mistakes}");
    assert!(
        score.should_match > 100,
        "too few checks to measure: {score}"
    );
    assert!(
        score.right_by_rule.get("table_time").copied().unwrap_or(0) > score.right / 2,
        "most matches must be by table and time, or the days measure nothing: {score}"
    );
    assert_eq!(score.wrong, 0, "precision below 1.0:\n{score}\n{mistakes}");
    assert!(
        score.recall() >= 0.98,
        "recall below 0.98:\n{score}\n{mistakes}"
    );
    // A missed check leaves its booking confirmed; nothing else may be off in the diary.
    assert!(
        score.diary_errors <= score.missed,
        "diary errors beyond the missed checks:\n{score}\n{mistakes}"
    );
}

crate::on_both_stores!(seeded_service_days_come_out_as_a_host_would_write_them);
