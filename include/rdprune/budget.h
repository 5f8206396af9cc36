// What a budget counts. Torch-free.
#pragma once

#include <string>

namespace rdprune {

// params: kept weights; flops: kept multiply-accumulates per sample; latency: measured seconds per
// batch on the machine the model will run on (channel plans only: docs/channels.md, "Latency").
enum class BudgetKind { kParams, kFlops, kLatency };

// "params" | "flops" | "latency"; UsageError naming budget otherwise.
BudgetKind parse_budget(const std::string& text);
std::string to_string(BudgetKind budget);

}  // namespace rdprune
