// SPDX-License-Identifier: MPL-2.0
//! Input and output bound to preallocated device memory, so a GPU run does not allocate or
//! stage through pageable memory: the pre-processor writes straight into a pinned host tensor,
//! which is copied once per frame into a fixed device input; the model writes a fixed device
//! output, copied once into a pinned host tensor. Fixed device addresses are also what CUDA
//! graphs need.
//!
//! Every tensor here is owned (allocated by an ort `Allocator`): `IoBinding::bind_input` and
//! `Tensor::copy_into` clone a borrowed tensor first, and that clone re-enters ort's copy-session
//! lock and deadlocks.

use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, Session};
use ort::value::Tensor;

/// Where the "device" side lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Memory {
    Cuda {
        device_id: i32,
    },
    /// Host memory on both sides: the same code path on the CPU provider, for tests.
    Cpu,
}

pub struct DeviceIo {
    binding: IoBinding,
    /// Two host inputs: one is copied to the device while the other is being filled
    /// ([`DeviceIo::run_overlapped`]). None when the input is made on the device
    /// ([`DeviceIo::new_device_input`]).
    host_in: Option<[Tensor<f32>; 2]>,
    /// Which `host_in` [`DeviceIo::run`] reads.
    active: usize,
    dev_in: Tensor<f32>,
    dev_out: Tensor<f32>,
    /// Two host outputs: the last run's, read while the next run writes the other.
    host_out: [Tensor<f32>; 2],
    /// Which `host_out` holds the last run's output, if any run happened.
    last_out: Option<usize>,
    in_len: usize,
    out_len: usize,
    out_shape: Vec<i64>,
    /// The host input is page-locked (CUDA pinned) memory (`GST_YOLO_NO_PINNED` turns that off,
    /// for comparison).
    pub pinned: bool,
}

fn err(what: &str) -> impl Fn(ort::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn numel(shape: &[i64]) -> Result<usize, String> {
    shape.iter().try_fold(1usize, |n, &d| {
        usize::try_from(d)
            .ok()
            .and_then(|d| n.checked_mul(d))
            .ok_or_else(|| format!("shape {shape:?} is not static"))
    })
}

impl DeviceIo {
    pub fn new(
        session: &Session,
        memory: Memory,
        input_name: &str,
        output_name: &str,
        in_shape: &[i64],
        out_shape: &[i64],
    ) -> Result<DeviceIo, String> {
        Self::with_host_input(
            session,
            memory,
            input_name,
            output_name,
            in_shape,
            out_shape,
            true,
        )
    }

    /// For inputs written on the device (GPU pre-processing): no host input tensors, so a large
    /// batch costs no pinned host memory.
    pub fn new_device_input(
        session: &Session,
        memory: Memory,
        input_name: &str,
        output_name: &str,
        in_shape: &[i64],
        out_shape: &[i64],
    ) -> Result<DeviceIo, String> {
        Self::with_host_input(
            session,
            memory,
            input_name,
            output_name,
            in_shape,
            out_shape,
            false,
        )
    }

    fn with_host_input(
        session: &Session,
        memory: Memory,
        input_name: &str,
        output_name: &str,
        in_shape: &[i64],
        out_shape: &[i64],
        host_input: bool,
    ) -> Result<DeviceIo, String> {
        let in_len = numel(in_shape)?;
        let out_len = numel(out_shape)?;
        let (dev, host_in_alloc, pinned) = match memory {
            Memory::Cuda { device_id } => {
                let info = |dev, ty| {
                    MemoryInfo::new(dev, device_id, AllocatorType::Device, ty)
                        .map_err(err("memory info"))
                };
                let dev =
                    Allocator::new(session, info(AllocationDevice::CUDA, MemoryType::Default)?)
                        .map_err(err("CUDA allocator"))?;
                let pin = if std::env::var_os("GST_YOLO_NO_PINNED").is_some() {
                    None
                } else {
                    Allocator::new(
                        session,
                        info(AllocationDevice::CUDA_PINNED, MemoryType::CPUInput)?,
                    )
                    .ok()
                };
                match pin {
                    Some(p) => (dev, p, true),
                    // Pageable memory still works, only the copy is slower.
                    None => (dev, Allocator::default(), false),
                }
            }
            Memory::Cpu => (Allocator::default(), Allocator::default(), false),
        };
        // The output comes back into plain host memory: ONNX Runtime 1.31 fails a copy from
        // CUDA into a CUDA-pinned tensor ("dst_data != src_data", GPUDataTransfer), seen on an
        // H100.
        let host_out_alloc = Allocator::default();
        let host_in = if host_input {
            Some([
                Tensor::<f32>::new(&host_in_alloc, in_shape.to_vec()).map_err(err("host input"))?,
                Tensor::<f32>::new(&host_in_alloc, in_shape.to_vec()).map_err(err("host input"))?,
            ])
        } else {
            None
        };
        let dev_in = Tensor::<f32>::new(&dev, in_shape.to_vec()).map_err(err("device input"))?;
        let mut dev_out =
            Tensor::<f32>::new(&dev, out_shape.to_vec()).map_err(err("device output"))?;
        let host_out = [
            Tensor::<f32>::new(&host_out_alloc, out_shape.to_vec()).map_err(err("host output"))?,
            Tensor::<f32>::new(&host_out_alloc, out_shape.to_vec()).map_err(err("host output"))?,
        ];
        let mut binding = session.create_binding().map_err(err("I/O binding"))?;
        binding
            .bind_input(input_name, &dev_in)
            .map_err(err("binding the input"))?;
        binding
            .bind_output(output_name, &mut dev_out)
            .map_err(err("binding the output"))?;
        let mut io = DeviceIo {
            binding,
            host_in,
            active: 0,
            dev_in,
            dev_out,
            host_out,
            last_out: None,
            in_len,
            out_len,
            out_shape: out_shape.to_vec(),
            pinned,
        };
        if let Some(h) = &mut io.host_in {
            host_slice(&mut h[0], in_len).fill(0.0);
        }
        Ok(io)
    }

    /// The active host-side input tensor, to be filled before [`DeviceIo::run`]; empty for a
    /// device-input binding.
    pub fn input_mut(&mut self) -> &mut [f32] {
        match &mut self.host_in {
            Some(h) => host_slice(&mut h[self.active], self.in_len),
            None => &mut [],
        }
    }

    /// The device input's address, for a kernel to write the model input into.
    pub fn device_input_ptr(&mut self) -> u64 {
        self.dev_in.data_ptr_mut() as u64
    }

    /// Runs the model on what is already in the device input (written by a kernel) and returns
    /// the device address of its output, complete, for the caller to copy.
    pub fn run_device_raw(&mut self, session: &mut Session) -> Result<u64, String> {
        // ONNX Runtime synchronises its stream at the end of a run, so the output is complete.
        // (`synchronize_outputs` would be a device-wide sync, refused while another worker's
        // session is capturing a CUDA graph during cuDNN's algorithm search: seen on an H200.)
        drop(session.run_binding(&self.binding).map_err(err("run"))?);
        Ok(self.dev_out.data_ptr() as u64)
    }

    /// Copies the active host input to the device, runs the model and copies its output back;
    /// returns the output's shape and host data.
    pub fn run(&mut self, session: &mut Session) -> Result<(&[i64], &[f32]), String> {
        let out = self.last_out.unwrap_or(0);
        let DeviceIo {
            binding,
            host_in: Some(host_in),
            active,
            dev_in,
            dev_out,
            host_out,
            ..
        } = self
        else {
            return Err("this binding takes its input on the device".into());
        };
        run_bound(
            session,
            binding,
            &host_in[*active],
            dev_in,
            dev_out,
            &mut host_out[out],
        )?;
        self.last_out = Some(out);
        Ok((
            &self.out_shape,
            host_slice_ref(&self.host_out[out], self.out_len),
        ))
    }

    /// The last run's output (shape, data), if there was a run.
    pub fn last_output(&self) -> Option<(&[i64], &[f32])> {
        self.last_out.map(|o| {
            (
                self.out_shape.as_slice(),
                host_slice_ref(&self.host_out[o], self.out_len),
            )
        })
    }

    /// Like [`DeviceIo::run`], while `side` runs on a scoped thread with the other host input
    /// (to fill) and the previous run's output; afterwards the filled input is the active one
    /// and this run's output the last one.
    pub fn run_overlapped<P: Send>(
        &mut self,
        session: &mut Session,
        side: impl FnOnce(&mut [f32], Option<(&[i64], &[f32])>) -> P + Send,
    ) -> (Result<(), String>, P) {
        let cur = self.active;
        let prev_out = self.last_out;
        let new_out = prev_out.map_or(0, |o| 1 - o);
        let DeviceIo {
            binding,
            host_in: Some(host_in),
            dev_in,
            dev_out,
            host_out,
            in_len,
            out_len,
            out_shape,
            ..
        } = self
        else {
            return (
                Err("this binding takes its input on the device".into()),
                side(&mut [], None),
            );
        };
        let (in0, in1) = host_in.split_at_mut(1);
        let (cur_in, next_in) = if cur == 0 {
            (&in0[0], &mut in1[0])
        } else {
            (&in1[0], &mut in0[0])
        };
        let (out0, out1) = host_out.split_at_mut(1);
        let (new_host_out, prev_host_out) = if new_out == 0 {
            (&mut out0[0], &out1[0])
        } else {
            (&mut out1[0], &out0[0])
        };
        let next = host_slice(next_in, *in_len);
        let prev = prev_out.map(|_| {
            (
                out_shape.as_slice(),
                host_slice_ref(prev_host_out, *out_len),
            )
        });
        let (r, p) = std::thread::scope(|sc| {
            let h = sc.spawn(move || side(next, prev));
            let r = run_bound(session, binding, cur_in, dev_in, dev_out, new_host_out);
            (r, h.join())
        });
        let p = match p {
            Ok(p) => p,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        self.active = 1 - cur;
        if r.is_ok() {
            self.last_out = Some(new_out);
        }
        (r, p)
    }
}

fn host_slice(t: &mut Tensor<f32>, len: usize) -> &mut [f32] {
    let p = t.data_ptr_mut().cast::<f32>();
    // SAFETY: every host tensor here was allocated by `Tensor::new` for exactly `len` f32 values
    // in host-accessible memory (CPU or CUDA pinned) and is owned by its `DeviceIo`; the slice
    // borrows the tensor mutably, so it is the only reference while it lives.
    unsafe { std::slice::from_raw_parts_mut(p, len) }
}

fn host_slice_ref(t: &Tensor<f32>, len: usize) -> &[f32] {
    let p = t.data_ptr().cast::<f32>();
    // SAFETY: as in `host_slice`; the output was written by a synchronous copy before this
    // borrow and nothing writes it while the shared borrow lives.
    unsafe { std::slice::from_raw_parts(p, len) }
}

/// Host input -> device input, run, device output -> host output; all synchronous.
fn run_bound(
    session: &mut Session,
    binding: &IoBinding,
    host_in: &Tensor<f32>,
    dev_in: &mut Tensor<f32>,
    dev_out: &mut Tensor<f32>,
    host_out: &mut Tensor<f32>,
) -> Result<(), String> {
    host_in
        .copy_into(&mut *dev_in)
        .map_err(err("copying the input to the device"))?;
    // The outputs returned here are the bound `dev_out`; nothing to take from them.
    drop(session.run_binding(binding).map_err(err("run"))?);
    dev_out
        .copy_into(&mut *host_out)
        .map_err(err("copying the output to the host"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::numel;

    #[test]
    fn numel_needs_static_shapes() {
        assert_eq!(numel(&[1, 84, 8400]), Ok(705_600));
        assert!(numel(&[1, 84, -1]).unwrap_err().contains("not static"));
    }
}
