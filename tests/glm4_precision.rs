//! Stage one's mixed precision: what training updates (LoRA matrices, full fine-tuning's master
//! weights), its gradients and AdamW's moments are fp32 whatever the compute dtype, and the
//! moments come back from a checkpoint in fp32. The checks are generic over the backend: the
//! CPU runs them here (fp32, a sanity check of the bookkeeping), wgpu runs them in f16
//! (`wgpu_backend::f16_checks`), where each would fail if any of those were half precision.

use std::collections::BTreeMap;

use arp_train::models::glm4::load::{load_adapter, load_model};
use arp_train::models::glm4::ChatGlmModel;
use arp_train::models::params::{named_params, set_trainable, trainable_in_fp32, PathStack};
use arp_train::models::to_host_f32;
use arp_train::train::adamw_state;
use arp_train::train::lm_backward::{lm_grads, LmBackward};
use burn::backend::{Autodiff, NdArray};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, Optimizer};
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Tensor};

use crate::glm4::{fixture, ints, Expected};

type A = Autodiff<NdArray<f32>>;

/// Every parameter's dtype and values, by name.
fn params<B: Backend, M: Module<B>>(model: &M) -> BTreeMap<String, (DType, Vec<f32>)> {
    struct Collect(PathStack, BTreeMap<String, (DType, Vec<f32>)>);
    impl<B: Backend> ModuleVisitor<B> for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let tensor = param.val();
            self.1
                .insert(self.0.name(), (tensor.dtype(), to_host_f32(tensor)));
        }
    }
    let mut collect = Collect(PathStack::default(), BTreeMap::new());
    model.visit(&mut collect);
    collect.1
}

/// What is trained, set up as stage one does: the LoRA fixture (A and B non-zero) or, for full
/// fine-tuning, every weight (master weights in fp32).
pub fn trained_model<A: AutodiffBackend>(lora: bool, device: &A::Device) -> ChatGlmModel<A> {
    let (mut model, _) = load_model::<A>(&fixture().join("model"), device).unwrap();
    if lora {
        load_adapter(&mut model, &fixture().join("adapter"), device).unwrap();
        trainable_in_fp32(set_trainable(model, |name| name.contains(".lora.")))
    } else {
        trainable_in_fp32(set_trainable(model, |_| true))
    }
}

/// One AdamW step (no weight decay) on the fixture batch.
fn step<A: AutodiffBackend, O: Optimizer<ChatGlmModel<A>, A>>(
    model: ChatGlmModel<A>,
    optimizer: &mut O,
    lr: f64,
    device: &A::Device,
) -> (ChatGlmModel<A>, f64) {
    let expected = Expected::load();
    let ids = ints::<A>(&expected, "input_ids", device);
    let labels = ints::<A>(&expected, "labels", device);
    let micro = lm_grads(&model, ids, labels, 1.0, 7, LmBackward::Plain);
    (optimizer.step(lr, model, micro.grads), micro.loss)
}

fn adamw<A: AutodiffBackend>(
) -> burn::optim::adaptor::OptimizerAdaptor<burn::optim::AdamW, ChatGlmModel<A>, A> {
    AdamWConfig::new()
        .with_weight_decay(0.0)
        .with_epsilon(1e-8)
        .init()
}

/// What one small step did to the trained parameters.
#[derive(Debug)]
pub struct SmallStep {
    /// Entries whose |gradient| is above 1e-3 of their tensor's largest.
    pub checked: usize,
    /// Of those, the share a half-precision weight would have lost (w + update rounds to w).
    pub lost_in_half: f64,
    /// The largest |(w' - w) + lr g / (|g| + eps)| / lr (Adam's first step), beyond fp32's own
    /// rounding of w'.
    pub worst_update_error: f64,
}

/// One AdamW step at `lr`, far below the half-precision resolution of most trained weights:
/// every trained entry with a gradient moves by about `lr`, and the trained parameters stay
/// fp32 while the frozen ones keep the compute dtype.
pub fn small_updates_survive_on<A: AutodiffBackend>(
    lora: bool,
    lr: f64,
    device: &A::Device,
) -> SmallStep {
    let model = trained_model::<A>(lora, device);
    let trained: Vec<_> = named_params(&model)
        .into_iter()
        .filter(|p| p.trainable)
        .collect();
    let compute = arp_train::models::glm4::model::compute_dtype::<A>(device);
    let before = params(&model);
    for (name, (dtype, _)) in &before {
        let is_trained = trained.iter().any(|p| &p.name == name);
        let want = if is_trained { DType::F32 } else { compute };
        assert_eq!(*dtype, want, "{name}");
    }
    let expected = Expected::load();
    let grads = lm_grads(
        &model,
        ints::<A>(&expected, "input_ids", device),
        ints::<A>(&expected, "labels", device),
        1.0,
        7,
        LmBackward::Plain,
    );
    let grads_by_name: BTreeMap<String, Vec<f32>> = trained
        .iter()
        .map(|p| {
            let g = crate::glm4_recompute::flat::<A>(&grads.grads, p.id)
                .unwrap_or_else(|| panic!("{}: no gradient", p.name));
            (p.name.clone(), g)
        })
        .collect();
    let mut optimizer = adamw::<A>();
    let (model, _) = step(model, &mut optimizer, lr, device);
    let after = params(&model);
    let (mut checked, mut lost, mut worst) = (0usize, 0usize, 0.0f64);
    for p in &trained {
        let (dtype, new) = &after[&p.name];
        assert_eq!(*dtype, DType::F32, "{} after the step", p.name);
        let old = &before[&p.name].1;
        let g = &grads_by_name[&p.name];
        let largest = g.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for ((w, w2), g) in old.iter().zip(new).zip(g) {
            if g.abs() <= 1e-3 * largest || g.abs() < 1e-6 {
                continue;
            }
            checked += 1;
            let update = (*w2 as f64) - (*w as f64);
            let g = *g as f64;
            let want = -lr * g / (g.abs() + 1e-8);
            // fp32 itself rounds w + update to a few ulp of w.
            let rounding = 2.0 * f32::EPSILON as f64 * w.abs() as f64;
            worst = worst.max(((update - want).abs() - rounding).max(0.0) / lr);
            let half = |v: f64| half::f16::from_f64(v).to_f64();
            if half(*w as f64 + want) == half(*w as f64) {
                lost += 1;
            }
        }
    }
    assert!(checked > 0);
    SmallStep {
        checked,
        lost_in_half: lost as f64 / checked as f64,
        worst_update_error: worst,
    }
}

/// Step 1, a checkpoint of the optimizer, step 2 twice: from the optimizer in memory and from
/// one loaded from the checkpoint. Returns the largest difference of a trained parameter
/// between the two (0: the resumed step is the same step).
pub fn resumed_step_matches_on<A: AutodiffBackend>(legacy_file: bool, device: &A::Device) -> f64 {
    let lr = 1e-3;
    let mut optimizer = adamw::<A>();
    let (model, _) = step(trained_model::<A>(true, device), &mut optimizer, lr, device);
    let named = named_params(&model);
    let dir = tempfile::tempdir().unwrap();
    if legacy_file {
        // What checkpoints held before optimizer.safetensors.
        BinFileRecorder::<FullPrecisionSettings>::new()
            .record(optimizer.to_record(), dir.path().join("optimizer"))
            .unwrap();
    } else {
        adamw_state::save(&optimizer, &named, &dir.path().join(adamw_state::FILE)).unwrap();
    }
    let mut loaded = adamw_state::load(adamw::<A>(), &named, dir.path(), device).unwrap();
    let (a, _) = step(model.clone(), &mut optimizer, lr, device);
    let (b, _) = step(model, &mut loaded, lr, device);
    let (a, b) = (params(&a), params(&b));
    let mut worst = 0.0f32;
    for p in named.iter().filter(|p| p.trainable) {
        let (dtype, x) = &a[&p.name];
        assert_eq!(*dtype, DType::F32);
        assert_eq!(b[&p.name].0, DType::F32);
        for (x, y) in x.iter().zip(&b[&p.name].1) {
            worst = worst.max((x - y).abs());
        }
    }
    worst as f64
}

/// The loss of the fixture batch over `steps` AdamW steps at `lr`.
pub fn loss_curve_on<A: AutodiffBackend>(
    lora: bool,
    steps: usize,
    lr: f64,
    device: &A::Device,
) -> Vec<f64> {
    let mut model = trained_model::<A>(lora, device);
    let mut optimizer = adamw::<A>();
    let mut losses = Vec::new();
    for _ in 0..steps {
        let (next, loss) = step(model, &mut optimizer, lr, device);
        model = next;
        losses.push(loss);
    }
    losses
}

#[test]
fn small_updates_survive_and_trained_parameters_are_fp32() {
    let device = Default::default();
    for lora in [true, false] {
        let s = small_updates_survive_on::<A>(lora, 1e-5, &device);
        println!("cpu (lora {lora}): {s:?}");
        assert!(s.checked >= 1000 && s.worst_update_error <= 0.01, "{s:?}");
    }
}

#[test]
fn a_resumed_optimizer_takes_the_same_step() {
    let device = Default::default();
    for legacy in [false, true] {
        let worst = resumed_step_matches_on::<A>(legacy, &device);
        assert_eq!(worst, 0.0, "legacy file: {legacy}");
    }
}

#[test]
fn a_checkpointed_optimizer_state_for_other_parameters_is_refused() {
    let device = Default::default();
    let mut optimizer = adamw::<A>();
    let (model, _) = step(
        trained_model::<A>(true, &device),
        &mut optimizer,
        1e-3,
        &device,
    );
    let dir = tempfile::tempdir().unwrap();
    let named = named_params(&model);
    adamw_state::save(&optimizer, &named, &dir.path().join(adamw_state::FILE)).unwrap();
    // The same checkpoint for a run that trains only the first layer's adapters.
    let fewer = set_trainable(model, |name| {
        name.contains("layers.0.") && name.contains(".lora.")
    });
    let err = adamw_state::load(adamw::<A>(), &named_params(&fewer), dir.path(), &device)
        .err()
        .expect("refused");
    assert!(
        err.contains("does not train") && err.contains("layers.1."),
        "{err}"
    );
}
