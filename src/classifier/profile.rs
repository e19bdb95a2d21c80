//! The benchmark's view of inference: how long each operator of the plan takes
//! (`examples/operators.rs` runs it natively and in Wasm, node by node).

use super::Classifier;
use serde::Serialize;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::{eval, SimpleState};

/// One operator's share of an inference, from [`Classifier::profile`].
#[derive(Clone, Debug, Serialize)]
pub struct OperatorTime {
    pub node: String,
    pub operator: String,
    pub ms: f64,
}

impl Classifier {
    /// Runs the model once on a preprocessed tensor and reports how long each operator
    /// took, in plan order.
    pub fn profile(&self, input: Tensor) -> TractResult<Vec<OperatorTime>> {
        let mut times = Vec::new();
        let mut tensor = input;
        for plan in &self.segments {
            let mut state = SimpleState::new(plan)?;
            let mut outputs = state.run_plan_with_eval(
                tvec!(tensor.into()),
                |session, op_state, node, inputs| {
                    let start = std::time::Instant::now();
                    let outputs = eval(session, op_state, node, inputs);
                    times.push(OperatorTime {
                        node: node.name.clone(),
                        operator: node.op.name().to_string(),
                        ms: start.elapsed().as_secs_f64() * 1e3,
                    });
                    outputs
                },
            )?;
            tensor = outputs.remove(0).into_tensor();
        }
        Ok(times)
    }
}
