//! A development harness for the classifier commands until the main binary wires them as
//! `switchyard score | eval | train`. Not installed: examples are not shipped.

use clap::Parser;
use switchyard::classify::commands::{self, EvalArgs, ScoreArgs, TrainArgs};

#[derive(Parser)]
enum Cli {
    Score(ScoreArgs),
    Eval(EvalArgs),
    Train(TrainArgs),
    /// Embeds `prompt` of each stdin JSONL row; prints one JSON array per line (for checking against other tools).
    Embed(commands::ModelArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse() {
        Cli::Score(a) => commands::score(&a),
        Cli::Eval(a) => commands::eval(&a),
        Cli::Train(a) => commands::train(&a),
        Cli::Embed(a) => embed(&a),
    }
}

fn embed(args: &commands::ModelArgs) -> anyhow::Result<()> {
    use std::io::BufRead;
    let mut embedder = switchyard::classify::embed::Embedder::load(&args.settings())?;
    let texts: Vec<String> = std::io::stdin()
        .lock()
        .lines()
        .map(|l| -> anyhow::Result<String> {
            let v: serde_json::Value = serde_json::from_str(&l?)?;
            Ok(switchyard::classify::text::from_prompt(v["prompt"].as_str().unwrap_or("")).into_string())
        })
        .collect::<anyhow::Result<_>>()?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    for v in embedder.embed(&refs)? {
        println!("{}", serde_json::to_string(&v)?);
    }
    Ok(())
}
