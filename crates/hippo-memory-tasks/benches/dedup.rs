use hippo_memory_tasks::similarity::{Matrix, Search, kernel_name, similar_groups};
use std::time::Instant;
fn main() {
    for n in [10_000usize, 50_000] {
        let d = 384;
        let mut s = 1u64;
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            let v: Vec<f32> = (0..d)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                })
                .collect();
            rows.push(v);
        }
        let m = Matrix::from_rows(d, rows.iter().map(|r| r.as_slice())).unwrap();
        let t = Instant::now();
        let g = similar_groups(&m, &Search::above(0.88)).unwrap();
        println!(
            "{} n={n} groups={} {:?}",
            kernel_name(),
            g.len(),
            t.elapsed()
        );
    }
}
