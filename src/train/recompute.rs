//! Per-block recomputation (activation checkpointing by blocks) for any stack of blocks, the
//! way `torch.utils.checkpoint` is used on transformer layers. The forward keeps only each
//! block's input; the backward re-runs one block at a time under autodiff and pulls the
//! gradient through it as a vector-Jacobian product, so only one block's activations are alive
//! at a time. Cost: about one extra forward.
//!
//! burn 0.21 has no such API: its `BalancedCheckpointing` recomputes only memory-bound ops and
//! keeps every matmul output (../shared/reference/burn-0.21.md).

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

/// Runs `forward(i, block_i, x)` over the stack without recording a tape and returns each
/// block's input and the last block's output. The blocks run on the autodiff backend with their
/// parameters detached, so training-only behaviour (dropout) is the same as in the recomputation;
/// `forward` must draw the same random numbers for the same `i` both times (reseed per block).
pub fn forward_keeping_inputs<B, M, const D: usize>(
    blocks: &[M],
    input: Tensor<B::InnerBackend, D>,
    forward: impl Fn(usize, &M, Tensor<B, D>) -> Tensor<B, D>,
) -> (Vec<Tensor<B::InnerBackend, D>>, Tensor<B::InnerBackend, D>)
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    let mut inputs = Vec::with_capacity(blocks.len());
    let mut x = input;
    for (i, block) in blocks.iter().enumerate() {
        inputs.push(x.clone());
        let detached = block.clone().no_grad();
        x = forward(i, &detached, Tensor::from_inner(x)).inner();
    }
    (inputs, x)
}

/// Pulls `upstream` (the loss gradient with respect to the stack's output) back through the
/// blocks, last first, recomputing each from its kept input. Each block's parameter gradients go
/// to `sink`; returns the gradient with respect to the stack's input.
pub fn backward_through<B, M, const D: usize>(
    blocks: &[M],
    inputs: Vec<Tensor<B::InnerBackend, D>>,
    upstream: Tensor<B::InnerBackend, D>,
    forward: impl Fn(usize, &M, Tensor<B, D>) -> Tensor<B, D>,
    mut sink: impl FnMut(GradientsParams),
) -> Tensor<B::InnerBackend, D>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    assert_eq!(blocks.len(), inputs.len(), "one kept input per block");
    let mut grad = upstream;
    for (i, (block, input)) in blocks.iter().zip(inputs).enumerate().rev() {
        let (input_grad, params) = vjp(block, input, grad, |m, x| forward(i, m, x));
        sink(params);
        grad = input_grad;
    }
    grad
}

/// The vector-Jacobian product of `forward(module, x)` at `input` with `upstream`: the gradient
/// with respect to `input` and the gradients of `module`'s trainable parameters.
pub fn vjp<B, M, const D: usize, const E: usize>(
    module: &M,
    input: Tensor<B::InnerBackend, D>,
    upstream: Tensor<B::InnerBackend, E>,
    forward: impl FnOnce(&M, Tensor<B, D>) -> Tensor<B, E>,
) -> (Tensor<B::InnerBackend, D>, GradientsParams)
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    let x = Tensor::<B, D>::from_inner(input).require_grad();
    let out = forward(module, x.clone());
    // d/dθ sum(out * upstream) = J^T upstream: the seed enters as a constant factor.
    let mut grads = (out * Tensor::from_inner(upstream)).sum().backward();
    let input_grad = x
        .grad_remove(&mut grads)
        .unwrap_or_else(|| x.inner().zeros_like());
    (input_grad, GradientsParams::from_module(&mut grads, module))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::module::{Module, Param};
    use burn::optim::GradientsAccumulator;
    use burn::tensor::{Distribution, TensorData};

    type A = Autodiff<NdArray<f32>>;

    #[derive(Module, Debug)]
    struct Layer<B: burn::tensor::backend::Backend> {
        weight: Param<Tensor<B, 2>>,
    }

    impl<B: burn::tensor::backend::Backend> Layer<B> {
        fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
            burn::tensor::activation::tanh(x.clone().matmul(self.weight.val())) + x
        }
    }

    #[derive(Module, Debug)]
    struct Stack<B: burn::tensor::backend::Backend> {
        layers: Vec<Layer<B>>,
    }

    fn stack(device: &burn::backend::ndarray::NdArrayDevice) -> Stack<A> {
        let layers = (0..3)
            .map(|_| Layer {
                weight: Param::from_tensor(Tensor::random(
                    [4, 4],
                    Distribution::Normal(0.0, 0.5),
                    device,
                )),
            })
            .collect();
        Stack { layers }
    }

    #[test]
    fn recomputed_gradients_equal_the_plain_backward() {
        let device = Default::default();
        let model = stack(&device);
        let x = Tensor::<A, 2>::from_data(
            TensorData::new((0..12).map(|v| v as f32 * 0.1 - 0.5).collect(), [3, 4]),
            &device,
        );
        let target = x.clone().flip([0]);
        let loss_of = |y: Tensor<A, 2>| (y - target.clone()).powi_scalar(2).sum();

        let plain_input = x.clone().require_grad();
        let mut y = plain_input.clone();
        for layer in &model.layers {
            y = layer.forward(y);
        }
        let mut plain = loss_of(y).backward();
        let plain_input_grad = plain_input.grad_remove(&mut plain).unwrap();
        let plain_params = GradientsParams::from_grads(plain, &model);

        let forward = |_: usize, layer: &Layer<A>, x: Tensor<A, 2>| layer.forward(x);
        let (inputs, out) = forward_keeping_inputs(&model.layers, x.inner(), forward);
        let (upstream, _) = vjp(
            &model,
            out,
            Tensor::<NdArray<f32>, 1>::ones([1], &device),
            |_: &Stack<A>, y: Tensor<A, 2>| loss_of(y),
        );
        let mut accumulator = GradientsAccumulator::<Stack<A>>::new();
        let input_grad = backward_through(&model.layers, inputs, upstream, forward, |g| {
            accumulator.accumulate(&model, g)
        });
        let recomputed = accumulator.grads();

        let max_diff = |a: Tensor<NdArray<f32>, 2>, b: Tensor<NdArray<f32>, 2>| {
            (a - b).abs().max().into_scalar()
        };
        assert!(max_diff(input_grad, plain_input_grad) <= 1e-6);
        for layer in &model.layers {
            let id = layer.weight.id;
            let want = plain_params.get::<NdArray<f32>, 2>(id).unwrap();
            let got = recomputed.get::<NdArray<f32>, 2>(id).unwrap();
            assert!(max_diff(got, want) <= 1e-6);
        }
    }
}
