#pragma once
/// \file Losses: softmax cross-entropy fused over logits, mse and huber.
/// One thread per row in the CPU backend's order of operations, then one
/// block sums the rows in a fixed order.
#include <cuda_runtime.h>

#include <cstdint>

namespace troupe::devices::cuda_backend {

/// Per row i of logits z [rows, cols] with class labels[i] (stored as
/// floats): row_loss[i] = logsumexp(z_i) - z_i[label], row_correct[i] =
/// argmax == label; dz (when not null) = grad_scale * (softmax(z) -
/// onehot(label)). A label outside [0, cols) sets *bad_label to 1.
void cross_entropy(cudaStream_t s, const float* z, const float* labels,
                   std::int64_t rows, std::int64_t cols, float grad_scale,
                   float* dz, double* row_loss, int* row_correct,
                   int* bad_label);

/// kind 1: mse, 2: huber with delta. row_loss[i] = mean over the row's
/// outputs; d (when not null) = grad_scale / cols * dloss/dpred.
void regression(cudaStream_t s, int kind, float delta, const float* pred,
                const float* target, std::int64_t rows, std::int64_t cols,
                float grad_scale, float* d, double* row_loss);

/// out[0] = sum of row_loss, out[1] = sum of row_correct (0 when null),
/// out[2] = *bad_label (0 when null); out is device memory.
void reduce_loss(cudaStream_t s, const double* row_loss, const int* row_correct,
                 const int* bad_label, std::int64_t rows, double* out);

} // namespace troupe::devices::cuda_backend
