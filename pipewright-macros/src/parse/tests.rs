//! What a `pipeline!` with errors is read as: which statements stay steps, which stand
//! in, and when no model is built. (What rustc then reports is in the root crate's
//! `tests/ui`.)

use quote::{quote, ToTokens};

use super::{parse, Failure};
use crate::model::Pipeline;

/// Parses `pipeline!(#body)`, expecting errors; returns their messages and the model.
fn failing(body: proc_macro2::TokenStream) -> (Vec<String>, Option<Pipeline>) {
    match parse(quote!((::pipewright) #body)) {
        Ok(_) => panic!("expected errors"),
        Err(Failure { errors, model }) => (
            errors.into_iter().map(|error| error.to_string()).collect(),
            model.map(|model| *model),
        ),
    }
}

/// The stand-ins' statements, as text, in order.
fn standing_in(model: &Pipeline) -> Vec<String> {
    model
        .stand_ins
        .iter()
        .flat_map(|stand_in| &stand_in.statements)
        .map(|statement| statement.to_token_stream().to_string())
        .collect()
}

#[test]
fn a_correct_pipeline_has_nothing_standing_in() {
    let model = parse(quote!((::pipewright) |value: i32, _ctx: &()| { value = value + 1; }))
        .unwrap_or_else(|_| panic!("expected no error"));
    assert_eq!(model.main.len(), 1);
    assert!(model.stand_ins.is_empty() && model.items.is_empty());
}

#[test]
fn a_let_and_what_follows_it_stand_in_and_the_steps_before_stay() {
    let (errors, model) = failing(quote!(|value: i32, _ctx: &()| {
        value = value + 1;
        let doubled = value * 2;
        doubled + 1;
    }));
    assert_eq!(errors.len(), 1);
    let model = model.unwrap();
    assert_eq!(model.main.len(), 1);
    assert_eq!(
        standing_in(&model),
        ["let doubled = value * 2 ;", "doubled + 1 ;"]
    );
}

#[test]
fn a_section_step_naming_what_a_let_binds_stands_in_with_its_error_binding() {
    let (_, model) = failing(quote!(|value: i32, _ctx: &()| {
        let limit = 5;
        rescue!(|error| {
            limit;
            0;
        });
    }));
    let model = model.unwrap();
    assert_eq!(
        model.rescue.as_ref().map(|rescue| rescue.steps.len()),
        Some(1)
    );
    assert_eq!(standing_in(&model), ["let limit = 5 ;", "limit ;"]);
    assert_eq!(model.stand_ins[1].errors.len(), 1);
}

#[test]
fn a_return_stands_in_as_loop() {
    let (_, model) = failing(quote!(|value: i32, _ctx: &()| {
        if value > 3 {
            return 1;
        } else {
            value
        };
    }));
    assert_eq!(
        standing_in(&model.unwrap()),
        ["if value > 3 { loop { } ; } else { value } ;"]
    );
}

#[test]
fn a_step_that_does_not_parse_costs_only_itself() {
    let (errors, model) = failing(quote!(|value: i32, _ctx: &()| {
        value = value + 1;
        value +;
        value * 2
    }));
    assert_eq!(errors, ["expected an expression"]);
    let model = model.unwrap();
    assert_eq!(model.main.len(), 2);
    assert!(model.stand_ins.is_empty());
}

#[test]
fn items_are_kept_beside_the_steps() {
    let (_, model) = failing(quote!(|value: i32, _ctx: &()| {
        fn helper(value: i32) -> i32 {
            value
        }
        helper(value);
    }));
    let model = model.unwrap();
    assert_eq!((model.items.len(), model.main.len()), (1, 1));
}

#[test]
fn sections_not_kept_stand_in() {
    let (errors, model) = failing(quote!(|value: i32, _ctx: &()| {
        value = value + 1;
        rescue!(|error| {
            0;
        });
        rescue!(|again| {
            1;
        });
    }));
    assert_eq!(errors.len(), 1);
    let model = model.unwrap();
    assert!(model.rescue.is_some());
    assert_eq!(standing_in(&model), ["1 ;"]);
}

#[test]
fn no_model_when_steps_could_name_what_nothing_binds() {
    // No context; a fourth binding a step names; an untyped value.
    for body in [
        quote!(|value: i32| {
            value = value + 1;
        }),
        quote!(|value: i32, _ctx: &(), current, extra: u8| {
            value + extra as i32;
        }),
        quote!(|value, _ctx: &()| {
            value = value + 1;
        }),
    ] {
        let (errors, model) = failing(body);
        assert!(!errors.is_empty());
        assert!(model.is_none());
    }
    // A fourth binding that no step names does not matter to the model.
    let (_, model) = failing(quote!(|value: i32, _ctx: &(), current, extra: u8| {
        value = value + 1;
    }));
    assert!(model.is_some());
}
