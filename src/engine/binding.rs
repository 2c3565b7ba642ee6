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
    host_in: Tensor<f32>,
    dev_in: Tensor<f32>,
    dev_out: Tensor<f32>,
    host_out: Tensor<f32>,
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
        let host_in =
            Tensor::<f32>::new(&host_in_alloc, in_shape.to_vec()).map_err(err("host input"))?;
        let dev_in = Tensor::<f32>::new(&dev, in_shape.to_vec()).map_err(err("device input"))?;
        let mut dev_out =
            Tensor::<f32>::new(&dev, out_shape.to_vec()).map_err(err("device output"))?;
        let host_out =
            Tensor::<f32>::new(&host_out_alloc, out_shape.to_vec()).map_err(err("host output"))?;
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
            dev_in,
            dev_out,
            host_out,
            in_len,
            out_len,
            out_shape: out_shape.to_vec(),
            pinned,
        };
        io.input_mut().fill(0.0);
        Ok(io)
    }

    /// The host-side input tensor, to be filled before [`DeviceIo::run`].
    pub fn input_mut(&mut self) -> &mut [f32] {
        let p = self.host_in.data_ptr_mut().cast::<f32>();
        // SAFETY: `host_in` was allocated by `Tensor::new` for exactly `in_len` f32 values in
        // host-accessible memory (CPU or CUDA pinned), it is owned by `self` and never bound to
        // the session, and `&mut self` makes this the only reference for the slice's lifetime.
        unsafe { std::slice::from_raw_parts_mut(p, self.in_len) }
    }

    /// Copies the host input to the device, runs the model and copies its output back; returns
    /// the output's shape and host data.
    pub fn run(&mut self, session: &mut Session) -> Result<(&[i64], &[f32]), String> {
        self.host_in
            .copy_into(&mut self.dev_in)
            .map_err(err("copying the input to the device"))?;
        // The outputs returned here are the bound `dev_out`; nothing to take from them.
        drop(session.run_binding(&self.binding).map_err(err("run"))?);
        self.dev_out
            .copy_into(&mut self.host_out)
            .map_err(err("copying the output to the host"))?;
        let p = self.host_out.data_ptr().cast::<f32>();
        // SAFETY: `host_out` holds `out_len` f32 values in host-accessible memory, written by the
        // synchronous copy above; the slice borrows `self`, so nothing writes it meanwhile.
        Ok((&self.out_shape, unsafe {
            std::slice::from_raw_parts(p, self.out_len)
        }))
    }
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
