//! Classifier speed benchmark (run by bench/classifier.sh): latency of single requests by prompt length, and
//! throughput of concurrent requests through the service (queue, workers, micro-batching). Every text is distinct
//! so the cache never answers.
//!
//! usage: classifier_bench DATA.jsonl [workers] [threads] [max_batch] [batch_window_us] [solo_threads]

use std::time::Instant;

use switchyard::classify::{Classifier, ClassifierSettings, text};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let data = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "../shared/data/routing/dev_routing.jsonl".into());
    let arg = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let settings = ClassifierSettings {
        workers: arg(2, 2) as usize,
        threads: arg(3, 1) as usize,
        max_batch: arg(4, 1) as usize,
        batch_window_us: arg(5, 0),
        solo_threads: arg(6, ClassifierSettings::default().solo_threads as u64) as usize,
        queue_bound: 4096,
        ..ClassifierSettings::default()
    };
    let t0 = Instant::now();
    let c = Classifier::load(&settings)?;
    println!(
        "settings: workers={} threads={} max_batch={} window_us={} solo_threads={}",
        settings.workers,
        settings.threads,
        settings.max_batch,
        settings.batch_window_us,
        settings.solo_threads
    );
    println!(
        "cold start (runtime, {} sessions, heads): {:.0} ms",
        settings.workers + usize::from(settings.solo_threads > settings.threads),
        t0.elapsed().as_secs_f64() * 1e3
    );

    let prompts: Vec<String> = std::fs::read_to_string(&data)?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["prompt"].as_str().map(str::to_owned))
        .collect();
    anyhow::ensure!(prompts.len() >= 400, "need at least 400 prompts");

    // Warm-up: ORT allocates arenas on first runs of each shape.
    for (i, p) in prompts.iter().take(20).enumerate() {
        let _ = c.classify(&text::from_prompt(&format!("warm {i} {p}"))).await;
    }

    // Latency by length: words approximate tokens (~1.3 tokens per word); 256 tokens ≈ 190 words.
    for (label, words) in [("~32 tokens", 24usize), ("~128 tokens", 96), ("~256 tokens", 190)] {
        let mut lat = Vec::new();
        let mut k = 0;
        for p in prompts.iter().cycle().take(2000) {
            if lat.len() >= 200 {
                break;
            }
            let mut w: Vec<&str> = p.split_whitespace().collect();
            while w.len() < words {
                let extra: Vec<&str> = w.clone();
                w.extend(extra);
            }
            k += 1;
            let t = format!("{k} {}", w[..words].join(" "));
            let start = Instant::now();
            c.classify(&text::from_prompt(&t)).await?;
            lat.push(start.elapsed().as_secs_f64() * 1e3);
        }
        lat.sort_by(f64::total_cmp);
        println!(
            "latency {label:12} sequential: p50 {:.2} ms  p99 {:.2} ms  (n={})",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.len()
        );
    }

    // Throughput: 64 concurrent clients over distinct dev prompts (their natural lengths).
    for clients in [1usize, 8, 64] {
        let n = if clients == 1 { 200 } else { 1200 };
        let texts: Vec<_> = (0..n)
            .map(|i| text::from_prompt(&format!("c{clients} {i} {}", prompts[i % prompts.len()])))
            .collect();
        let start = Instant::now();
        let mut lat = Vec::new();
        for chunk in texts.chunks(clients) {
            let t = Instant::now();
            let results = futures::future::join_all(chunk.iter().map(|x| c.classify(x))).await;
            let e = t.elapsed().as_secs_f64() * 1e3;
            for r in results {
                r?;
                lat.push(e);
            }
        }
        let secs = start.elapsed().as_secs_f64();
        lat.sort_by(f64::total_cmp);
        println!(
            "throughput {clients:3} concurrent, dev prompts: {:.0} req/s  (batch wall p50 {:.1} ms, p99 {:.1} ms)",
            n as f64 / secs,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
    }
    Ok(())
}
