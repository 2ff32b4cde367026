//! The tour's timelines: each scenario's ASCII chart is compared with the
//! checked-in one in `tests/golden/tour/`, and its SVG with the picture the README shows
//! (`docs/tour/`); run with `UPDATE_GOLDEN=1` to rewrite both after an intended change.
//! Each SVG is parsed as XML and checked for one lane per instance, with the marks its
//! chart shows.

#[path = "../examples/tour.rs"]
mod tour;

use std::path::PathBuf;

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/tour")
        .join(format!("{name}.txt"))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_scenario_matches_its_golden_chart_and_its_svg_has_a_lane_per_instance() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for scenario in tour::scenarios() {
        let timeline = tour::run(&scenario).await;
        let chart = tour::chart(&scenario, &timeline);
        let path = golden(scenario.name);
        if update {
            std::fs::write(&path, &chart).unwrap();
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("missing {}: run with UPDATE_GOLDEN=1", path.display()));
        assert_eq!(
            chart, expected,
            "{} differs from its golden chart",
            scenario.name
        );

        let svg = timeline.svg(&tour::title(&scenario));
        let picture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("docs/tour")
            .join(format!("{}.svg", scenario.name));
        if update {
            std::fs::write(&picture, &svg).unwrap();
        }
        let shown = std::fs::read_to_string(&picture)
            .unwrap_or_else(|_| panic!("missing {}: run with UPDATE_GOLDEN=1", picture.display()));
        assert_eq!(
            svg, shown,
            "{}: the README's picture is stale",
            scenario.name
        );
        let document = roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
        let lanes: Vec<_> = document
            .descendants()
            .filter(|node| node.attribute("class") == Some("lane"))
            .collect();
        // One chart line per instance: those starting with the pipeline's name.
        let instances = chart
            .lines()
            .filter(|line| line.starts_with("work#"))
            .count();
        assert_eq!(
            lanes.len(),
            instances,
            "{}: one lane per instance",
            scenario.name
        );
        for (mark, class) in [('|', "finished"), ('x', "cancelled"), ('D', "dropped")] {
            let in_chart = chart
                .lines()
                .filter(|line| line.starts_with("work#") && line.ends_with(mark))
                .count();
            let in_svg = lanes
                .iter()
                .filter(|lane| {
                    lane.descendants()
                        .any(|node| node.attribute("class") == Some(class))
                })
                .count();
            assert_eq!(in_svg, in_chart, "{}: {class} marks", scenario.name);
        }
        let root = document.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert!(document
            .descendants()
            .any(|node| node.attribute("class") == Some("axis")));
        assert!(document
            .descendants()
            .any(|node| node.attribute("class") == Some("legend")));
    }
}
