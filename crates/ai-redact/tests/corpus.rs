//! The labelled corpus (`tests/corpus/*.txt`, written for this project): per-detector
//! precision and recall, printed, and the overall thresholds asserted.
//!
//! A finding counts as right when a label has the same detector name and the same byte
//! range; anything else is a false positive, and a label nothing found is a miss.

use ai_redact::Detectors;
use std::collections::BTreeMap;
use std::path::Path;

struct Doc {
    text: String,
    labels: Vec<(String, usize, usize)>,
}

fn parse(doc: &str) -> Doc {
    let mut text = String::with_capacity(doc.len());
    let mut labels = Vec::new();
    let mut rest = doc;
    while let Some(i) = rest.find("[[") {
        text.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let bar = after.find('|').expect("label name");
        let end = after.find("]]").expect("label end");
        let value = &after[bar + 1..end];
        labels.push((
            after[..bar].to_owned(),
            text.len(),
            text.len() + value.len(),
        ));
        text.push_str(value);
        rest = &after[end + 2..];
    }
    text.push_str(rest);
    Doc { text, labels }
}

fn corpus() -> Vec<(String, Doc)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "corpus files: {files:?}");
    let mut docs = Vec::new();
    for f in files {
        let raw = std::fs::read_to_string(&f).expect("read");
        let body: String = raw
            .lines()
            .skip_while(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let name = f.file_name().expect("name").to_string_lossy().into_owned();
        for d in body.split("\n=====\n") {
            docs.push((name.clone(), parse(d)));
        }
    }
    docs
}

#[derive(Default)]
struct Score {
    tp: u32,
    fp: u32,
    fn_: u32,
}

impl Score {
    fn precision(&self) -> f64 {
        f64::from(self.tp) / f64::from((self.tp + self.fp).max(1))
    }
    fn recall(&self) -> f64 {
        f64::from(self.tp) / f64::from((self.tp + self.fn_).max(1))
    }
}

#[test]
fn labelled_corpus_precision_and_recall() {
    let d = Detectors::builtin();
    let mut per: BTreeMap<String, Score> = BTreeMap::new();
    let mut all = Score::default();
    let mut misses = Vec::new();
    let mut bytes = 0;
    for (file, doc) in corpus() {
        bytes += doc.text.len();
        let (mut found, mut tokens) = (Vec::new(), Vec::new());
        d.scan(&doc.text, &mut found, &mut tokens);
        let mut matched = vec![false; doc.labels.len()];
        for f in &found {
            let name = d.specs()[f.detector].name.to_string();
            let hit = doc
                .labels
                .iter()
                .position(|(n, s, e)| *n == name && *s == f.start && *e == f.end);
            match hit {
                Some(i) => {
                    matched[i] = true;
                    per.entry(name).or_default().tp += 1;
                    all.tp += 1;
                }
                None => {
                    misses.push(format!(
                        "{file}: false positive {name}: {:?}",
                        &doc.text[f.range()]
                    ));
                    per.entry(name).or_default().fp += 1;
                    all.fp += 1;
                }
            }
        }
        for (i, (name, s, e)) in doc.labels.iter().enumerate() {
            if !matched[i] {
                misses.push(format!("{file}: missed {name}: {:?}", &doc.text[*s..*e]));
                per.entry(name.clone()).or_default().fn_ += 1;
                all.fn_ += 1;
            }
        }
    }
    println!(
        "corpus: {bytes} bytes, {} labelled values",
        all.tp + all.fn_
    );
    println!(
        "{:<24} {:>5} {:>5} {:>5} {:>9} {:>7}",
        "detector", "tp", "fp", "fn", "precision", "recall"
    );
    for (name, s) in &per {
        println!(
            "{name:<24} {:>5} {:>5} {:>5} {:>9.3} {:>7.3}",
            s.tp,
            s.fp,
            s.fn_,
            s.precision(),
            s.recall()
        );
    }
    println!(
        "{:<24} {:>5} {:>5} {:>5} {:>9.3} {:>7.3}",
        "OVERALL",
        all.tp,
        all.fp,
        all.fn_,
        all.precision(),
        all.recall()
    );
    for m in &misses {
        println!("{m}");
    }
    assert!(all.tp + all.fn_ >= 300, "the corpus has too few labels");
    assert!(all.precision() >= 0.95, "precision {:.3}", all.precision());
    assert!(all.recall() >= 0.95, "recall {:.3}", all.recall());
}
