//! Layers shared by the decoder models (flow, HiFT, discriminators), with PyTorch's weight
//! layouts and state-dict names, and the builder that creates their parameters either from a
//! checkpoint (by name) or from PyTorch's default initializations (training from scratch).
//!
//! Convolutions are computed as matmuls over shifted copies of the input (im2col): exact,
//! differentiable on every backend, and far faster than burn-ndarray's direct convolution.

use std::cell::RefCell;

use burn::module::{Module, Param};
use burn::tensor::activation::{gelu, leaky_relu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Slice, Tensor, TensorData};

use crate::checkpoint::tensors::{TensorError, TensorSource, TensorStore};
use crate::models::padded_matmul::padded_matmul;
use crate::models::params::named_param;
use crate::rng::Rng;

/// How a fresh parameter is filled when training from scratch.
#[derive(Clone, Copy, Debug)]
pub enum Fill {
    /// U(-b, b): PyTorch's default for Linear and Conv weights and biases (b = 1/sqrt(fan_in)).
    Uniform(f64),
    Normal(f64),
    Const(f64),
}

impl Fill {
    pub fn fan_in(fan_in: usize) -> Fill {
        Fill::Uniform(1.0 / (fan_in.max(1) as f64).sqrt())
    }
}

enum Source<'a> {
    Checkpoint(&'a dyn TensorSource),
    Random(RefCell<Rng>),
    /// Shapes only: every tensor is a placeholder of one element; the real sizes are summed.
    Count(std::cell::Cell<usize>),
    /// Checked against a checkpoint's headers; every tensor is a placeholder of one element.
    Headers(&'a TensorStore),
}

/// Creates named parameters; records every name so a model can be saved under the same names.
pub struct Builder<'a, B: Backend> {
    source: Source<'a>,
    pub device: B::Device,
    names: RefCell<Vec<String>>,
}

impl<'a, B: Backend> Builder<'a, B> {
    /// Parameters read from `source` by their state-dict names.
    pub fn load(source: &'a dyn TensorSource, device: &B::Device) -> Self {
        Builder {
            source: Source::Checkpoint(source),
            device: device.clone(),
            names: RefCell::default(),
        }
    }

    /// Fresh parameters drawn from `seed`.
    pub fn random(seed: u64, device: &B::Device) -> Self {
        Builder {
            source: Source::Random(RefCell::new(Rng::new(seed))),
            device: device.clone(),
            names: RefCell::default(),
        }
    }

    /// Checks `store`'s headers (names, shapes, dtypes) as loading would, without reading or
    /// allocating the weights: build a model with it and drop the model.
    pub fn headers(store: &'a TensorStore, device: &B::Device) -> Self {
        Builder {
            source: Source::Headers(store),
            device: device.clone(),
            names: RefCell::default(),
        }
    }

    /// Counts parameters without allocating them (placeholder tensors of one element): build a
    /// model, then read `counted()`.
    pub fn counting(device: &B::Device) -> Self {
        Builder {
            source: Source::Count(std::cell::Cell::new(0)),
            device: device.clone(),
            names: RefCell::default(),
        }
    }

    /// Parameters counted by a `counting` builder.
    pub fn counted(&self) -> usize {
        match &self.source {
            Source::Count(n) => n.get(),
            _ => 0,
        }
    }

    /// The names of every parameter created so far, in creation order.
    pub fn into_names(self) -> Vec<String> {
        self.names.into_inner()
    }

    fn values(&self, name: &str, shape: &[usize], fill: Fill) -> Result<Vec<f32>, TensorError> {
        match &self.source {
            Source::Checkpoint(store) => store.f32(name, shape),
            Source::Random(rng) => {
                let n: usize = shape.iter().product();
                let mut rng = rng.borrow_mut();
                Ok((0..n)
                    .map(|_| match fill {
                        Fill::Uniform(b) => rng.symmetric(b) as f32,
                        Fill::Normal(std) => (rng.normal() * std) as f32,
                        Fill::Const(c) => c as f32,
                    })
                    .collect())
            }
            Source::Count(_) | Source::Headers(_) => {
                unreachable!("counting and checking builders make placeholders")
            }
        }
    }

    pub fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        fill: Fill,
    ) -> Result<Tensor<B, D>, TensorError> {
        match &self.source {
            Source::Count(n) => {
                n.set(n.get() + shape.iter().product::<usize>());
                return Ok(Tensor::zeros([1; D], &self.device));
            }
            Source::Headers(store) => {
                store.check(name, &shape)?;
                return Ok(Tensor::zeros([1; D], &self.device));
            }
            _ => {}
        }
        let values = self.values(name, &shape, fill)?;
        Ok(Tensor::from_data(
            TensorData::new(values, shape),
            &self.device,
        ))
    }

    pub fn param<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        fill: Fill,
    ) -> Result<Param<Tensor<B, D>>, TensorError> {
        let tensor = self.tensor(name, shape, fill)?;
        self.names.borrow_mut().push(name.to_string());
        Ok(named_param(name, tensor))
    }

    fn has(&self, name: &str) -> bool {
        match &self.source {
            Source::Checkpoint(store) => store.contains(name),
            Source::Headers(store) => store.contains(name),
            Source::Random(_) | Source::Count(_) => false,
        }
    }

    /// A weight-normed weight (`{name}.weight_g` [out, 1, ..], `{name}.weight_v`), as PyTorch's
    /// `weight_norm` (dim 0) stores it. Also reads the newer parametrization names
    /// (`parametrizations.weight.original0/1`) and plain folded weights (`{name}.weight`, g is
    /// then its norm).
    pub fn weight_norm<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        fill: Fill,
    ) -> Result<WeightNorm<B, D>, TensorError> {
        let mut g_shape = [1; D];
        g_shape[0] = shape[0];
        let (g_name, v_name) = (format!("{name}.weight_g"), format!("{name}.weight_v"));
        let (g, v) =
            if self.has(&g_name) || matches!(self.source, Source::Random(_) | Source::Count(_)) {
                let v = self.tensor(&v_name, shape, fill)?;
                let g = match &self.source {
                    Source::Random(_) => norm_except_first(v.clone()),
                    _ => self.tensor(&g_name, g_shape, fill)?,
                };
                (g, v)
            } else if self.has(&format!("{name}.parametrizations.weight.original0")) {
                let g = self.tensor(
                    &format!("{name}.parametrizations.weight.original0"),
                    g_shape,
                    fill,
                )?;
                let v = self.tensor(
                    &format!("{name}.parametrizations.weight.original1"),
                    shape,
                    fill,
                )?;
                (g, v)
            } else if self.has(&format!("{name}.weight")) {
                let v = self.tensor(&format!("{name}.weight"), shape, fill)?;
                (norm_except_first(v.clone()), v)
            } else {
                // Report the name a weight-normed checkpoint would have.
                self.tensor(&g_name, g_shape, fill)?;
                unreachable!("a missing tensor is an error")
            };
        self.names.borrow_mut().push(g_name.clone());
        self.names.borrow_mut().push(v_name.clone());
        Ok(WeightNorm {
            weight_g: named_param(&g_name, g),
            weight_v: named_param(&v_name, v),
        })
    }
}

/// ||v|| over every dimension but the first, kept as [out, 1, ..].
fn norm_except_first<B: Backend, const D: usize>(v: Tensor<B, D>) -> Tensor<B, D> {
    let mut squares = v.powi_scalar(2);
    for dim in 1..D {
        squares = squares.sum_dim(dim);
    }
    squares.sqrt()
}

/// `w = g * v / ||v||` (PyTorch's weight_norm with dim 0).
#[derive(Module, Debug)]
pub struct WeightNorm<B: Backend, const D: usize> {
    pub weight_g: Param<Tensor<B, D>>,
    pub weight_v: Param<Tensor<B, D>>,
}

impl<B: Backend, const D: usize> WeightNorm<B, D> {
    pub fn weight(&self) -> Tensor<B, D> {
        let v = self.weight_v.val();
        v.clone() * self.weight_g.val() / norm_except_first(v)
    }
}

/// A plain or weight-normed weight.
#[derive(Module, Debug)]
pub struct ConvWeight<B: Backend, const D: usize> {
    pub weight: Option<Param<Tensor<B, D>>>,
    pub normed: Option<WeightNorm<B, D>>,
}

impl<B: Backend, const D: usize> ConvWeight<B, D> {
    fn build(
        b: &Builder<B>,
        name: &str,
        shape: [usize; D],
        fill: Fill,
        weight_norm: bool,
    ) -> Result<Self, TensorError> {
        Ok(if weight_norm {
            ConvWeight {
                weight: None,
                normed: Some(b.weight_norm(name, shape, fill)?),
            }
        } else {
            ConvWeight {
                weight: Some(b.param(&format!("{name}.weight"), shape, fill)?),
                normed: None,
            }
        })
    }

    pub fn get(&self) -> Tensor<B, D> {
        match (&self.weight, &self.normed) {
            (Some(w), _) => w.val(),
            (None, Some(n)) => n.weight(),
            (None, None) => unreachable!("a conv weight is plain or weight-normed"),
        }
    }
}

fn bias<B: Backend>(
    b: &Builder<B>,
    name: &str,
    n: usize,
    fill: Fill,
) -> Result<Param<Tensor<B, 1>>, TensorError> {
    b.param(&format!("{name}.bias"), [n], fill)
}

/// `y = x W^T + b`, W [out, in].
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> Linear<B> {
    /// PyTorch's default initialization.
    pub fn new(
        b: &Builder<B>,
        name: &str,
        input: usize,
        output: usize,
        with_bias: bool,
    ) -> Result<Self, TensorError> {
        Self::with_fill(
            b,
            name,
            input,
            output,
            with_bias,
            Fill::fan_in(input),
            Fill::fan_in(input),
        )
    }

    pub fn with_fill(
        b: &Builder<B>,
        name: &str,
        input: usize,
        output: usize,
        with_bias: bool,
        weight: Fill,
        bias_fill: Fill,
    ) -> Result<Self, TensorError> {
        Ok(Linear {
            weight: b.param(&format!("{name}.weight"), [output, input], weight)?,
            bias: if with_bias {
                Some(bias(b, name, output, bias_fill)?)
            } else {
                None
            },
        })
    }

    /// [`forward`](Self::forward) for a [b, in] batch of vectors, routed around a burn 0.21
    /// wgpu fusion bug (benches/perf-notes.md, "wgpu"): a one-row 2-D matmul whose input is an
    /// element-wise result and whose output gets the bias comes out wrong on wgpu; the same row
    /// as a [1, 1, in] batch is right.
    pub fn forward_rows(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let [rows, input] = x.dims();
        if rows != 1 {
            return self.forward(x);
        }
        let output = self.weight.val().dims()[0];
        self.forward(x.reshape([1, 1, input])).reshape([1, output])
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let y = padded_matmul(x, self.weight.val().transpose().unsqueeze());
        match &self.bias {
            Some(b) => y + b.val().unsqueeze(),
            None => y,
        }
    }
}

/// Softmax over `dim` in fp32 whatever the compute dtype (as autocast does), returned in the
/// input's dtype: attention scores summed over a long row in f16 lose the small weights.
pub fn softmax_in_f32<B: Backend, const D: usize>(
    scores: Tensor<B, D>,
    dim: usize,
) -> Tensor<B, D> {
    let dtype = scores.dtype();
    softmax(scores.cast(DType::F32), dim).cast(dtype)
}

/// LayerNorm over the last dimension; its statistics in fp32 whatever the compute dtype (as
/// autocast does: an f16 sum over a long row loses the variance).
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub bias: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    pub fn new(b: &Builder<B>, name: &str, dim: usize) -> Result<Self, TensorError> {
        Ok(LayerNorm {
            weight: b.param(&format!("{name}.weight"), [dim], Fill::Const(1.0))?,
            bias: bias(b, name, dim, Fill::Const(0.0))?,
            eps: 1e-5,
        })
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let dtype = x.dtype();
        let x = x.cast(DType::F32);
        let (var, mean) = x.clone().var_mean_bias(2);
        let normed = ((x - mean) / (var + self.eps).sqrt()).cast(dtype);
        normed * self.weight.val().unsqueeze() + self.bias.val().unsqueeze()
    }
}

/// GroupNorm over [batch, channels, time]; its statistics in fp32, like `LayerNorm`'s.
#[derive(Module, Debug)]
pub struct GroupNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub bias: Param<Tensor<B, 1>>,
    pub groups: usize,
}

impl<B: Backend> GroupNorm<B> {
    pub fn new(
        b: &Builder<B>,
        name: &str,
        groups: usize,
        channels: usize,
    ) -> Result<Self, TensorError> {
        Ok(GroupNorm {
            weight: b.param(&format!("{name}.weight"), [channels], Fill::Const(1.0))?,
            bias: bias(b, name, channels, Fill::Const(0.0))?,
            groups,
        })
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, channels, time] = x.dims();
        let dtype = x.dtype();
        let grouped =
            x.cast(DType::F32)
                .reshape([batch, self.groups, channels / self.groups * time]);
        let (var, mean) = grouped.clone().var_mean_bias(2);
        let normed = ((grouped - mean) / (var + 1e-5).sqrt())
            .reshape([batch, channels, time])
            .cast(dtype);
        normed * self.weight.val().reshape([1, channels, 1])
            + self.bias.val().reshape([1, channels, 1])
    }
}

/// Conv1d, weight [out, in, kernel], zero padding on both sides.
#[derive(Module, Debug)]
pub struct Conv1d<B: Backend> {
    pub weight: ConvWeight<B, 3>,
    pub bias: Option<Param<Tensor<B, 1>>>,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
}

/// The shape and options of a convolution layer.
#[derive(Clone, Copy, Debug)]
pub struct ConvSpec {
    pub input: usize,
    pub output: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub weight_norm: bool,
    pub bias: bool,
}

impl ConvSpec {
    pub fn new(input: usize, output: usize, kernel: usize) -> Self {
        ConvSpec {
            input,
            output,
            kernel,
            stride: 1,
            padding: 0,
            dilation: 1,
            weight_norm: false,
            bias: true,
        }
    }
    /// Output length = input length (stride 1, odd effective kernel).
    pub fn same(input: usize, output: usize, kernel: usize, dilation: usize) -> Self {
        ConvSpec {
            padding: (kernel * dilation - dilation) / 2,
            dilation,
            ..Self::new(input, output, kernel)
        }
    }
    pub fn stride(self, stride: usize, padding: usize) -> Self {
        ConvSpec {
            stride,
            padding,
            ..self
        }
    }
    pub fn weight_norm(self) -> Self {
        ConvSpec {
            weight_norm: true,
            ..self
        }
    }
}

impl<B: Backend> Conv1d<B> {
    /// PyTorch's default initialization (kaiming-uniform with a = sqrt(5): U(+-1/sqrt(fan_in))).
    pub fn new(b: &Builder<B>, name: &str, spec: ConvSpec) -> Result<Self, TensorError> {
        let fan_in = spec.input * spec.kernel;
        Self::with_fill(b, name, spec, Fill::fan_in(fan_in), Fill::fan_in(fan_in))
    }

    pub fn with_fill(
        b: &Builder<B>,
        name: &str,
        spec: ConvSpec,
        weight: Fill,
        bias_fill: Fill,
    ) -> Result<Self, TensorError> {
        Ok(Conv1d {
            weight: ConvWeight::build(
                b,
                name,
                [spec.output, spec.input, spec.kernel],
                weight,
                spec.weight_norm,
            )?,
            bias: if spec.bias {
                Some(bias(b, name, spec.output, bias_fill)?)
            } else {
                None
            },
            stride: spec.stride,
            padding: spec.padding,
            dilation: spec.dilation,
        })
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = pad_zeros(x, self.padding, self.padding);
        conv1d(
            x,
            self.weight.get(),
            self.bias.as_ref().map(|b| b.val()),
            self.stride,
            self.dilation,
        )
    }
}

/// ConvTranspose1d, weight [in, out, kernel].
#[derive(Module, Debug)]
pub struct ConvTranspose1d<B: Backend> {
    pub weight: ConvWeight<B, 3>,
    pub bias: Option<Param<Tensor<B, 1>>>,
    pub stride: usize,
    pub padding: usize,
}

impl<B: Backend> ConvTranspose1d<B> {
    pub fn new(b: &Builder<B>, name: &str, spec: ConvSpec) -> Result<Self, TensorError> {
        // PyTorch computes the fan-in of a transposed conv weight [in, out, k] as out * k.
        let fan_in = spec.output * spec.kernel;
        Ok(ConvTranspose1d {
            weight: ConvWeight::build(
                b,
                name,
                [spec.input, spec.output, spec.kernel],
                Fill::fan_in(fan_in),
                spec.weight_norm,
            )?,
            bias: if spec.bias {
                Some(bias(b, name, spec.output, Fill::fan_in(fan_in))?)
            } else {
                None
            },
            stride: spec.stride,
            padding: spec.padding,
        })
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        conv_transpose1d(
            x,
            self.weight.get(),
            self.bias.as_ref().map(|b| b.val()),
            self.stride,
            self.padding,
        )
    }
}

/// Conv2d, weight [out, in, kh, kw], zero padding (ph, pw) on both sides.
#[derive(Module, Debug)]
pub struct Conv2d<B: Backend> {
    pub weight: ConvWeight<B, 4>,
    pub bias: Option<Param<Tensor<B, 1>>>,
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl<B: Backend> Conv2d<B> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        b: &Builder<B>,
        name: &str,
        input: usize,
        output: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        weight_norm: bool,
    ) -> Result<Self, TensorError> {
        let fan_in = input * kernel[0] * kernel[1];
        Ok(Conv2d {
            weight: ConvWeight::build(
                b,
                name,
                [output, input, kernel[0], kernel[1]],
                Fill::fan_in(fan_in),
                weight_norm,
            )?,
            bias: Some(bias(b, name, output, Fill::fan_in(fan_in))?),
            stride,
            padding,
        })
    }

    /// Without bias or weight norm (a convolution followed by batch norm, as in ResNets).
    pub fn without_bias(
        b: &Builder<B>,
        name: &str,
        input: usize,
        output: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Result<Self, TensorError> {
        let fan_in = input * kernel[0] * kernel[1];
        Ok(Conv2d {
            weight: ConvWeight::build(
                b,
                name,
                [output, input, kernel[0], kernel[1]],
                Fill::fan_in(fan_in),
                false,
            )?,
            bias: None,
            stride,
            padding,
        })
    }

    /// x [batch, in, h, w] -> [batch, out, h', w'].
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let w = self.weight.get();
        let [out, input, kh, kw] = w.dims();
        let [batch, _, h, wd] = x.dims();
        let [ph, pw] = self.padding;
        let [sh, sw] = self.stride;
        let device = x.device();
        let mut x = x;
        if ph > 0 {
            let z = Tensor::zeros([batch, input, ph, wd], &device);
            x = Tensor::cat(vec![z.clone(), x, z], 2);
        }
        if pw > 0 {
            let z = Tensor::zeros([batch, input, h + 2 * ph, pw], &device);
            x = Tensor::cat(vec![z.clone(), x, z], 3);
        }
        let (hp, wp) = (h + 2 * ph, wd + 2 * pw);
        let (ho, wo) = ((hp - kh) / sh + 1, (wp - kw) / sw + 1);
        let mut taps = Vec::with_capacity(kh * kw);
        for i in 0..kh {
            for j in 0..kw {
                taps.push(x.clone().slice([
                    Slice::from(0..batch),
                    Slice::from(0..input),
                    Slice::from_range_stepped(i..i + sh * (ho - 1) + 1, sh as isize),
                    Slice::from_range_stepped(j..j + sw * (wo - 1) + 1, sw as isize),
                ]));
            }
        }
        // [batch, in, kh*kw, ho, wo] -> [batch, in*kh*kw, ho*wo]
        let cols = Tensor::stack::<5>(taps, 2).reshape([batch, input * kh * kw, ho * wo]);
        let y = padded_matmul(w.reshape([1, out, input * kh * kw]), cols);
        let y = match &self.bias {
            Some(bias) => y + bias.val().reshape([1, out, 1]),
            None => y,
        };
        y.reshape([batch, out, ho, wo])
    }
}

/// BatchNorm (1-D or 2-D, channels on dimension 1) as inference runs it: the running statistics,
/// then the affine weight and bias where the layer has them. Only for loading trained models.
#[derive(Module, Debug)]
pub struct BatchNorm<B: Backend> {
    pub weight: Option<Param<Tensor<B, 1>>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
    pub running_mean: Param<Tensor<B, 1>>,
    pub running_var: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: Backend> BatchNorm<B> {
    pub fn new(
        b: &Builder<B>,
        name: &str,
        channels: usize,
        affine: bool,
    ) -> Result<Self, TensorError> {
        let param = |field: &str, fill| b.param(&format!("{name}.{field}"), [channels], fill);
        Ok(BatchNorm {
            weight: affine
                .then(|| param("weight", Fill::Const(1.0)))
                .transpose()?,
            bias: affine
                .then(|| param("bias", Fill::Const(0.0)))
                .transpose()?,
            running_mean: param("running_mean", Fill::Const(0.0))?,
            running_var: param("running_var", Fill::Const(1.0))?,
            eps: 1e-5,
        })
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let channels = self.running_mean.dims()[0];
        let mut shape = [1; D];
        shape[1] = channels;
        let mut scale = (self.running_var.val() + self.eps).sqrt().recip();
        if let Some(weight) = &self.weight {
            scale = scale * weight.val();
        }
        let mut shift = self.running_mean.val().neg() * scale.clone();
        if let Some(bias) = &self.bias {
            shift = shift + bias.val();
        }
        x * scale.reshape(shape) + shift.reshape(shape)
    }
}

/// Zero padding on the time axis of [batch, channels, time].
pub fn pad_zeros<B: Backend>(x: Tensor<B, 3>, left: usize, right: usize) -> Tensor<B, 3> {
    if left == 0 && right == 0 {
        return x;
    }
    let [batch, channels, _] = x.dims();
    let device = x.device();
    let mut parts = Vec::with_capacity(3);
    if left > 0 {
        parts.push(Tensor::zeros([batch, channels, left], &device));
    }
    parts.push(x);
    if right > 0 {
        parts.push(Tensor::zeros([batch, channels, right], &device));
    }
    Tensor::cat(parts, 2)
}

/// Reflection padding on the time axis (PyTorch's `reflect`: the edge sample is not repeated).
pub fn pad_reflect<B: Backend>(x: Tensor<B, 3>, left: usize, right: usize) -> Tensor<B, 3> {
    let [batch, channels, time] = x.dims();
    let mut parts = Vec::with_capacity(3);
    if left > 0 {
        parts.push(
            x.clone()
                .slice([0..batch, 0..channels, 1..left + 1])
                .flip([2]),
        );
    }
    parts.push(x.clone());
    if right > 0 {
        parts.push(
            x.slice([0..batch, 0..channels, time - 1 - right..time - 1])
                .flip([2]),
        );
    }
    Tensor::cat(parts, 2)
}

/// Valid 1-D convolution of an already padded x [batch, in, time] with w [out, in, k].
pub fn conv1d<B: Backend>(
    x: Tensor<B, 3>,
    w: Tensor<B, 3>,
    bias: Option<Tensor<B, 1>>,
    stride: usize,
    dilation: usize,
) -> Tensor<B, 3> {
    let [batch, input, time] = x.dims();
    let [out, _, kernel] = w.dims();
    let span = dilation * (kernel - 1) + 1;
    let out_len = (time - span) / stride + 1;
    let cols = if kernel == 1 && stride == 1 {
        x
    } else if dilation == 1 && kernel > out_len {
        // Few long windows (the STFTs of the losses and discriminators): one unfold instead of
        // `kernel` slices, whose backward passes would each touch the whole input.
        x.slice([0..batch, 0..input, 0..(out_len - 1) * stride + kernel])
            .unfold::<4, usize>(2, kernel, stride)
            .swap_dims(2, 3)
            .reshape([batch, input * kernel, out_len])
    } else {
        let taps: Vec<Tensor<B, 3>> = (0..kernel)
            .map(|j| {
                let start = j * dilation;
                x.clone().slice([
                    Slice::from(0..batch),
                    Slice::from(0..input),
                    Slice::from_range_stepped(
                        start..start + stride * (out_len - 1) + 1,
                        stride as isize,
                    ),
                ])
            })
            .collect();
        Tensor::stack::<4>(taps, 2).reshape([batch, input * kernel, out_len])
    };
    let y = padded_matmul(w.reshape([1, out, input * kernel]), cols);
    match bias {
        Some(b) => y + b.reshape([1, out, 1]),
        None => y,
    }
}

/// Transposed 1-D convolution (PyTorch's ConvTranspose1d), w [in, out, k]: the per-tap
/// products of one matmul, overlap-added with the stride, then `padding` cut from both ends.
pub fn conv_transpose1d<B: Backend>(
    x: Tensor<B, 3>,
    w: Tensor<B, 3>,
    bias: Option<Tensor<B, 1>>,
    stride: usize,
    padding: usize,
) -> Tensor<B, 3> {
    let [batch, input, time] = x.dims();
    let [_, out, kernel] = w.dims();
    // [out * k, in] x [batch, in, time] -> [batch, out, k, time]
    let taps = padded_matmul(w.permute([1, 2, 0]).reshape([1, out * kernel, input]), x)
        .reshape([batch, out, kernel, time]);
    let full = overlap_add(taps, stride);
    let len = (time - 1) * stride + kernel - 2 * padding;
    let y = full.slice([0..batch, 0..out, padding..padding + len]);
    match bias {
        Some(b) => y + b.reshape([1, out, 1]),
        None => y,
    }
}

/// Sums `taps[b, c, k, t]` into `y[b, c, t * stride + k]`: output length (time - 1) * stride + k.
pub fn overlap_add<B: Backend>(taps: Tensor<B, 4>, stride: usize) -> Tensor<B, 3> {
    let [batch, channels, kernel, time] = taps.dims();
    let groups = kernel.div_ceil(stride);
    let padded = groups * stride;
    let taps = if padded > kernel {
        let z = Tensor::zeros([batch, channels, padded - kernel, time], &taps.device());
        Tensor::cat(vec![taps, z], 2)
    } else {
        taps
    };
    let full_len = (time + groups - 1) * stride;
    let mut sum: Option<Tensor<B, 3>> = None;
    for q in 0..groups {
        // Taps q*s .. q*s+s of frame t land at t*s + q*s + r.
        let block = taps
            .clone()
            .slice([0..batch, 0..channels, q * stride..(q + 1) * stride, 0..time])
            .swap_dims(2, 3)
            .reshape([batch, channels, time * stride]);
        let placed = pad_zeros(block, q * stride, (groups - 1 - q) * stride);
        sum = Some(match sum {
            Some(s) => s + placed,
            None => placed,
        });
    }
    let sum = sum.expect("kernel >= 1");
    sum.slice([
        0..batch,
        0..channels,
        0..full_len.min((time - 1) * stride + kernel),
    ])
}

/// Mish, with a softplus that cannot overflow: relu(x) + log1p(exp(-|x|)).
pub fn mish<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let softplus = x.clone().clamp_min(0.0) + x.clone().abs().neg().exp().log1p();
    x * softplus.tanh()
}

pub fn elu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let negative = x.clone().lower_equal_elem(0.0);
    x.clone().mask_where(negative, x.clamp_max(0.0).exp() - 1.0)
}

pub fn swish<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    burn::tensor::activation::silu(x)
}

pub fn exact_gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    gelu(x)
}

pub fn lrelu<B: Backend, const D: usize>(x: Tensor<B, D>, slope: f64) -> Tensor<B, D> {
    leaky_relu(x, slope)
}

/// A [batch, 1, time] mask of valid frames from lengths.
pub fn length_mask<B: Backend>(lengths: &[usize], time: usize, device: &B::Device) -> Tensor<B, 3> {
    let values: Vec<f32> = lengths
        .iter()
        .flat_map(|&n| (0..time).map(move |t| if t < n { 1.0 } else { 0.0 }))
        .collect();
    Tensor::from_data(TensorData::new(values, [lengths.len(), 1, time]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    type B = burn::backend::NdArray<f32>;

    fn t3(values: Vec<f32>, shape: [usize; 3]) -> Tensor<B, 3> {
        Tensor::from_data(TensorData::new(values, shape), &Default::default())
    }

    fn host(x: Tensor<B, 3>) -> Vec<f32> {
        x.into_data().into_vec::<f32>().unwrap()
    }

    #[test]
    fn conv_and_transposed_conv_match_direct_sums() {
        // x [1, 2, 5], w [3, 2, 3], stride 2, dilation 1, padding 1.
        let x: Vec<f32> = (0..10).map(|i| (i as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..18).map(|i| (i as f32 * 0.11).cos()).collect();
        let y = host(conv1d(
            pad_zeros(t3(x.clone(), [1, 2, 5]), 1, 1),
            t3(w.clone(), [3, 2, 3]),
            None,
            2,
            1,
        ));
        let xp = |c: usize, t: isize| {
            if (0..5).contains(&t) {
                x[c * 5 + t as usize]
            } else {
                0.0
            }
        };
        for o in 0..3 {
            for t in 0..3 {
                let direct: f32 = (0..2)
                    .flat_map(|c| (0..3).map(move |k| (c, k)))
                    .map(|(c, k)| w[o * 6 + c * 3 + k] * xp(c, (t * 2 + k) as isize - 1))
                    .sum();
                assert!((y[o * 3 + t] - direct).abs() < 1e-5);
            }
        }
        // Transposed: w [2 in, 3 out, 4 k], stride 2, padding 1 -> length (5-1)*2 + 4 - 2 = 10.
        let wt: Vec<f32> = (0..24).map(|i| (i as f32 * 0.23).sin()).collect();
        let y = host(conv_transpose1d(
            t3(x.clone(), [1, 2, 5]),
            t3(wt.clone(), [2, 3, 4]),
            None,
            2,
            1,
        ));
        assert_eq!(y.len(), 30);
        let mut direct = vec![0f32; 3 * 12];
        for c in 0..2 {
            for o in 0..3 {
                for t in 0..5 {
                    for k in 0..4 {
                        direct[o * 12 + t * 2 + k] += wt[c * 12 + o * 4 + k] * x[c * 5 + t];
                    }
                }
            }
        }
        for o in 0..3 {
            for i in 0..10 {
                assert!((y[o * 10 + i] - direct[o * 12 + i + 1]).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn reflect_padding_matches_pytorch() {
        let y = host(pad_reflect(t3(vec![1., 2., 3., 4., 5.], [1, 1, 5]), 2, 3));
        assert_eq!(y, vec![3., 2., 1., 2., 3., 4., 5., 4., 3., 2.]);
    }
}
