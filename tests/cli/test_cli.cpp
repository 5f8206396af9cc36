// End-to-end tests of the rdprune binary: exit codes, one-line reasons, JSON output, round trips.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <numeric>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "rdprune/atomic_file.h"
#include "rdprune/curves.h"
#include "rdprune/hits.h"

namespace rdprune {
namespace {
using testing::free_port;
using testing::TempDir;

struct Result {
  int code = -1;
  std::string out;
  std::string err;
};

std::string quote(const std::string& arg) {
  std::string quoted = "'";
  for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// Runs the binary with `args`; `env` ("NAME=value ...") is put before the command.
Result rdprune(const std::vector<std::string>& args, const std::string& env = "") {
  const char* binary = std::getenv("RDPRUNE_BIN");
  EXPECT_NE(binary, nullptr) << "RDPRUNE_BIN must point at the rdprune binary";
  TempDir dir;
  // One thread unless the test says otherwise. --threads belongs to the subcommand: insert it after
  // the first argument.
  const bool threads = std::find(args.begin(), args.end(), "--threads") != args.end();
  std::string command = (env.empty() ? "" : env + " ") + quote(binary ? binary : "rdprune");
  for (size_t i = 0; i < args.size(); ++i) {
    command += " " + quote(args[i]);
    if (i == 0 && !threads && args[0] != "--help" && args[0] != "--version") command += " --threads 1";
  }
  command += " >" + dir.file("out") + " 2>" + dir.file("err") + " </dev/null";
  const int status = std::system(command.c_str());
  Result run;
  run.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  run.out = read_file(dir.file("out"));
  run.err = read_file(dir.file("err"));
  return run;
}

// The error contract: the given exit code and exactly one "rdprune: error:" line naming `needle`.
void expect_error(const Result& run, int code, const std::string& needle) {
  EXPECT_EQ(run.code, code) << run.err;
  const auto at = run.err.find("rdprune: error: ");
  ASSERT_NE(at, std::string::npos) << run.err;
  const std::string line = run.err.substr(at);
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "reason must be one line: " << line;
  EXPECT_NE(line.find(needle), std::string::npos) << line;
}

class Cli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new TempDir();
    testing::write_idx_dataset(data_->path(), 256, 64, /*gzip=*/true);
  }
  static void TearDownTestSuite() { delete data_; }
  static std::string data_dir() { return data_->path(); }
  static TempDir* data_;
  TempDir work_;
};
TempDir* Cli::data_ = nullptr;

TEST_F(Cli, HelpAndVersion) {
  const Result help = rdprune({"--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("info"), std::string::npos);
  for (const std::string command : {"info", "train", "eval"}) {
    const Result sub = rdprune({command, "--help"});
    EXPECT_EQ(sub.code, 0) << command;
    EXPECT_NE(sub.out.find("--json"), std::string::npos) << command;
  }
  EXPECT_EQ(rdprune({"--version"}).code, 0);
  EXPECT_EQ(nlohmann::json::parse(rdprune({"--version", "--json"}).out).at("version"), "0.1.0");

  // --help --json: the same flags as data.
  const auto top = nlohmann::json::parse(rdprune({"--help", "--json"}).out);
  std::vector<std::string> commands;
  for (const auto& command : top.at("commands")) commands.push_back(command.at("name"));
  EXPECT_NE(std::find(commands.begin(), commands.end(), "compare"), commands.end());
  const Result run_help = rdprune({"run", "--help", "--json"});
  EXPECT_EQ(run_help.code, 0);
  const auto run = nlohmann::json::parse(run_help.out);
  EXPECT_EQ(run.at("command"), "run");
  bool sparsity_seen = false;
  for (const auto& option : run.at("options")) {
    if (option.at("name") != "--sparsity") continue;
    sparsity_seen = true;
    EXPECT_TRUE(option.at("required").get<bool>());
    EXPECT_TRUE(option.at("takes_value").get<bool>());
    EXPECT_EQ(option.at("type"), "FLOAT");
  }
  EXPECT_TRUE(sparsity_seen);
}

TEST_F(Cli, UsageErrorsExitWithTwo) {
  expect_error(rdprune({"frobnicate"}), 2, "frobnicate");
  expect_error(rdprune({"train", "--arch", "resnet20"}), 2, "--out");
  expect_error(rdprune({"train", "--arch", "resnet9000", "--epochs", "1", "--out", work_.file("m.pt")}), 2,
               "unknown architecture");
  expect_error(rdprune({"train", "--arch", "mlp", "--dataset", "imagenet21k", "--epochs", "1", "--out",
                        work_.file("m.pt")}),
               2, "unknown dataset");
  expect_error(rdprune({"train", "--arch", "mlp", "--epochs", "-1", "--out", work_.file("m.pt")}), 2,
               "--epochs");
  expect_error(
      rdprune({"train", "--arch", "mlp", "--epochs", "1", "--lr", "-0.1", "--out", work_.file("m.pt")}), 2,
      "--lr");
  expect_error(
      rdprune({"train", "--arch", "mlp", "--epochs", "1", "--lr", "abc", "--out", work_.file("m.pt")}), 2,
      "--lr");
  expect_error(
      rdprune({"train", "--arch", "mlp", "--epochs", "1", "--momentum", "2", "--out", work_.file("m.pt")}), 2,
      "--momentum");
  expect_error(rdprune({"eval", "--model", work_.file("m.pt"), "--limit", "-5"}), 2, "--limit");
  expect_error(rdprune({"info", "--model", work_.file("m.pt"), "--input-shape", "1,0,28"}), 1, "m.pt");
  // A negative seed is an error everywhere, not 2^64 - 1.
  expect_error(
      rdprune({"train", "--arch", "mlp", "--epochs", "1", "--seed", "-1", "--out", work_.file("m.pt")}), 2,
      "--seed");
  expect_error(rdprune({"run", "--model", work_.file("m.pt"), "--sparsity", "0.5", "--seed", "-1",
                        "--out-dir", work_.file("r")}),
               2, "--seed");
  expect_error(
      rdprune({"curves", "--model", work_.file("m.pt"), "--seed", "x", "--out", work_.file("c.json")}), 2,
      "--seed");
  const Result threads = rdprune({"info", "--model", "x", "--threads", "-3"});
  EXPECT_EQ(threads.code, 2) << threads.err;
  expect_error(rdprune({"info", "--model", "x", "--threads", "abc"}), 2, "--threads: expected a count");
  // An unknown option is named before any missing required one.
  expect_error(rdprune({"info", "--bogus-flag"}), 2, "unknown option --bogus-flag");
  expect_error(rdprune({"compare", "--model", "x", "--methods", "rd,magic", "--out-dir", work_.file("c")}), 2,
               "--methods: unknown method 'magic'");
}

TEST_F(Cli, BadFilesExitWithOne) {
  expect_error(rdprune({"eval", "--model", work_.file("missing.pt"), "--data-dir", data_dir()}), 1,
               "missing.pt");
  {
    std::ofstream out(work_.file("notes.txt"));
    out << "not a model";
  }
  expect_error(rdprune({"info", "--model", work_.file("notes.txt")}), 1,
               "not a rdprune checkpoint or TorchScript file");
  expect_error(rdprune({"train", "--arch", "mlp", "--epochs", "1", "--data-dir", work_.file("nowhere"),
                        "--out", work_.file("m.pt")}),
               1, "does not exist");
}

TEST_F(Cli, CorruptDataFilesExitWithOne) {
  TempDir bad;
  testing::write_idx_dataset(bad.path(), 32, 16, /*gzip=*/false);
  testing::truncate_file(bad.file("train-images-idx3-ubyte"), 500);
  expect_error(rdprune({"train", "--arch", "mlp", "--steps", "1", "--data-dir", bad.path(), "--out",
                        work_.file("m.pt")}),
               1, "truncated");
  testing::write_idx_dataset(bad.path(), 32, 16, false);
  testing::write_idx(bad.file("train-labels-idx1-ubyte"), {31}, std::vector<uint8_t>(31, 0), false);
  expect_error(rdprune({"train", "--arch", "mlp", "--steps", "1", "--data-dir", bad.path(), "--out",
                        work_.file("m.pt")}),
               1, "labels");
  testing::write_idx_dataset(bad.path(), 32, 16, false);
  testing::write_idx(bad.file("t10k-images-idx3-ubyte"), {16, 28}, std::vector<uint8_t>(16 * 28, 0), false);
  expect_error(rdprune({"train", "--arch", "mlp", "--steps", "1", "--data-dir", bad.path(), "--out",
                        work_.file("m.pt")}),
               1, "t10k-images");
  TempDir cifar;
  testing::write_cifar_dataset(cifar.path(), 1, 4);
  testing::truncate_file(cifar.file("test_batch.bin"), 3073 + 7);
  expect_error(rdprune({"train", "--arch", "mlp", "--steps", "1", "--dataset", "cifar10", "--data-dir",
                        cifar.path(), "--out", work_.file("m.pt")}),
               1, "test_batch.bin");
}

TEST_F(Cli, TrainEvalInfoRoundTripWithJson) {
  const std::string model = work_.file("lenet.pt");
  const Result trained =
      rdprune({"train", "--arch", "lenet5", "--steps", "40", "--batch-size", "32", "--lr", "0.05",
               "--no-augment", "--data-dir", data_dir(), "--out", model, "--json"});
  ASSERT_EQ(trained.code, 0) << trained.err;
  const auto train_json = nlohmann::json::parse(trained.out);
  EXPECT_EQ(train_json.at("steps"), 40);
  EXPECT_GT(train_json.at("top1").get<double>(), 0.5);

  const Result evaluated = rdprune({"eval", "--model", model, "--data-dir", data_dir(), "--json"});
  ASSERT_EQ(evaluated.code, 0) << evaluated.err;
  const auto eval_json = nlohmann::json::parse(evaluated.out);
  EXPECT_EQ(eval_json.at("samples"), 64);
  EXPECT_DOUBLE_EQ(eval_json.at("top1").get<double>(), train_json.at("top1").get<double>());
  EXPECT_DOUBLE_EQ(eval_json.at("top5").get<double>(), train_json.at("top5").get<double>());
  EXPECT_NEAR(eval_json.at("loss").get<double>(), train_json.at("loss").get<double>(), 1e-6);

  const Result limited =
      rdprune({"eval", "--model", model, "--data-dir", data_dir(), "--limit", "10", "--json"});
  EXPECT_EQ(nlohmann::json::parse(limited.out).at("samples"), 10);

  // Per-image outcomes, and a second model on the same images with the paired error.
  // The second model records another normalisation, and reads the images with it.
  const std::string other = work_.file("mlp.pt");
  ASSERT_EQ(rdprune({"train", "--arch", "mlp", "--steps", "3", "--data-dir", data_dir(), "--mean", "0.5",
                     "--std", "0.1", "--out", other})
                .code,
            0);
  const auto alone =
      nlohmann::json::parse(rdprune({"eval", "--model", other, "--data-dir", data_dir(), "--json"}).out);
  const std::string hits_file = work_.file("hits.txt");
  const Result paired = rdprune({"eval", "--model", model, "--against", other, "--hits", hits_file,
                                 "--data-dir", data_dir(), "--json"});
  ASSERT_EQ(paired.code, 0) << paired.err;
  const auto paired_json = nlohmann::json::parse(paired.out);
  const std::vector<uint8_t> hits = hits_from_text(read_file(hits_file), hits_file);
  ASSERT_EQ(hits.size(), 64u);
  EXPECT_DOUBLE_EQ(std::accumulate(hits.begin(), hits.end(), 0.0) / 64, eval_json.at("top1").get<double>());
  const double theirs = paired_json.at("against").at("top1").get<double>();
  EXPECT_DOUBLE_EQ(theirs, alone.at("top1").get<double>());
  EXPECT_DOUBLE_EQ(paired_json.at("against").at("loss").get<double>(), alone.at("loss").get<double>());
  EXPECT_NEAR(paired_json.at("difference").get<double>(), eval_json.at("top1").get<double>() - theirs, 1e-12);
  const auto first_ten = nlohmann::json::parse(rdprune({"eval", "--model", model, "--against", other,
                                                        "--limit", "10", "--data-dir", data_dir(), "--json"})
                                                   .out);
  EXPECT_EQ(first_ten.at("samples"), 10);
  EXPECT_DOUBLE_EQ(first_ten.at("difference").get<double>(),
                   first_ten.at("top1").get<double>() - first_ten.at("against").at("top1").get<double>());
  EXPECT_GT(paired_json.at("difference_se").get<double>(), 0.0);
  EXPECT_LT(paired_json.at("difference_se").get<double>(), 0.125);  // at most sqrt(1/64)
  const auto itself = nlohmann::json::parse(
      rdprune({"eval", "--model", model, "--against", model, "--data-dir", data_dir(), "--json"}).out);
  EXPECT_EQ(itself.at("difference").get<double>(), 0.0);
  EXPECT_EQ(itself.at("difference_se").get<double>(), 0.0);
  expect_error(
      rdprune({"eval", "--model", model, "--data-dir", data_dir(), "--hits", work_.file("no/h.txt")}), 1,
      "does not exist");
  expect_error(
      rdprune({"eval", "--model", model, "--data-dir", data_dir(), "--against", work_.file("none.pt")}), 1,
      "none.pt");
  // A command that reads models never writes over one.
  const std::string kept = read_file(other);
  expect_error(
      rdprune({"eval", "--model", model, "--against", other, "--data-dir", data_dir(), "--hits", other}), 2,
      "writing it would destroy the input");
  EXPECT_EQ(read_file(other), kept);

  const Result info = rdprune({"info", "--model", model, "--json"});
  ASSERT_EQ(info.code, 0) << info.err;
  const auto info_json = nlohmann::json::parse(info.out);
  ASSERT_EQ(info_json.at("layers").size(), 5u);
  EXPECT_EQ(info_json["layers"][0]["name"], "conv1");
  EXPECT_EQ(info_json["layers"][0]["flops_per_weight"], 28 * 28);
  EXPECT_EQ(info_json["layers"][4]["name"], "fc3");
  EXPECT_EQ(info_json["total_weights"], 150 + 2400 + 400 * 120 + 120 * 84 + 84 * 10);  // weights, no biases

  // Human output goes to stdout, progress to stderr.
  const Result human = rdprune({"info", "--model", model});
  EXPECT_NE(human.out.find("conv2"), std::string::npos);
}

// `size` processes of `args` started together, as torchrun starts them; their results by rank.
// `last_wrapper` goes before the last rank's command ("timeout -s KILL 2": it dies on the way).
std::vector<Result> several(int size, const std::vector<std::string>& args,
                            const std::string& last_wrapper = "") {
  const int port = free_port();
  std::vector<std::future<Result>> running;
  for (int rank = 0; rank < size; ++rank) {
    std::string env = fmt::format("RANK={} LOCAL_RANK={} WORLD_SIZE={} MASTER_ADDR=127.0.0.1 MASTER_PORT={}",
                                  rank, rank, size, port);
    if (rank == size - 1 && !last_wrapper.empty()) env += " " + last_wrapper;
    running.push_back(std::async(std::launch::async, [args, env] { return rdprune(args, env); }));
  }
  std::vector<Result> results;
  for (auto& run : running) results.push_back(run.get());
  return results;
}

// A LeNet-5 trained for 20 steps into `model`.
void train_briefly(const std::string& model, const std::string& data_dir) {
  ASSERT_EQ(rdprune({"train", "--arch", "lenet5", "--steps", "20", "--batch-size", "32", "--no-augment",
                     "--data-dir", data_dir, "--out", model})
                .code,
            0);
}

TEST_F(Cli, EvalOverSeveralProcessesEqualsOneProcess) {
  const std::string model = work_.file("lenet.pt");
  ASSERT_NO_FATAL_FAILURE(train_briefly(model, data_dir()));
  const std::string alone_hits = work_.file("alone.hits");
  const Result alone =
      rdprune({"eval", "--model", model, "--data-dir", data_dir(), "--hits", alone_hits, "--json"});
  ASSERT_EQ(alone.code, 0) << alone.err;
  const auto expected = nlohmann::json::parse(alone.out);
  for (const int size : {2, 3}) {
    const std::string hits = work_.file(fmt::format("hits-{}", size));
    const std::vector<Result> ranks = several(size, {"eval", "--model", model, "--data-dir", data_dir(),
                                                     "--hits", hits, "--json", "--dist-timeout", "60"});
    for (int rank = 0; rank < size; ++rank) ASSERT_EQ(ranks[rank].code, 0) << rank << ": " << ranks[rank].err;
    const auto json = nlohmann::json::parse(ranks[0].out);
    EXPECT_EQ(json.at("samples"), 64);
    // The counts are exact; the loss is a float sum in another order.
    EXPECT_DOUBLE_EQ(json.at("top1").get<double>(), expected.at("top1").get<double>());
    EXPECT_DOUBLE_EQ(json.at("top5").get<double>(), expected.at("top5").get<double>());
    EXPECT_NEAR(json.at("loss").get<double>(), expected.at("loss").get<double>(), 1e-6);
    EXPECT_EQ(read_file(hits), read_file(alone_hits));
    // Rank 0 alone reports.
    for (int rank = 1; rank < size; ++rank) EXPECT_EQ(ranks[rank].out, "");
  }
  // A process that ends by an error of its own (its model is not where it runs, after joining) is
  // named by the other, as a killed one is: it no longer answers.
  TempDir elsewhere;
  const std::filesystem::path cwd = std::filesystem::current_path();
  std::filesystem::current_path(work_.path());
  const std::vector<Result> failed =
      several(2, {"eval", "--model", "lenet.pt", "--data-dir", data_dir(), "--dist-timeout", "60"},
              "env -C " + elsewhere.path());
  std::filesystem::current_path(cwd);
  expect_error(failed[1], 1, "lenet.pt");
  expect_error(failed[0], 1, "rank 0 of 2: lost rank 1 (it ended or stopped answering: ");
  // The launcher's variables, checked.
  const std::vector<std::string> eval = {"eval", "--model", model, "--data-dir", data_dir()};
  expect_error(rdprune(eval, "WORLD_SIZE=2 RANK=2"), 2, "RANK: expected a whole number in 0..1, got '2'");
  expect_error(rdprune(eval, "WORLD_SIZE=two RANK=0"), 2, "WORLD_SIZE: expected a whole number");
  expect_error(rdprune(eval, "WORLD_SIZE=2 RANK=0 MASTER_PORT=29500"), 2, "MASTER_ADDR: not set");
  // A command that runs in one process only refuses to be one of several.
  expect_error(rdprune({"info", "--model", model}, "WORLD_SIZE=2 RANK=1"), 2,
               "rdprune info runs in one process, but the launcher started 2 (WORLD_SIZE)");
  // A process whose partners never come gives up after --dist-timeout, in one line.
  std::vector<std::string> lonely = eval;
  lonely.insert(lonely.end(), {"--dist-timeout", "2"});
  expect_error(
      rdprune(lonely, fmt::format("WORLD_SIZE=2 RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT={}", free_port())),
      1, "rank 0 of 2: cannot join the other processes at 127.0.0.1:");
  lonely.back() = "0";
  expect_error(rdprune(lonely), 2, "--dist-timeout: expected a positive number of seconds");
}

TEST_F(Cli, CurvesOverSeveralProcessesEqualOneProcessByteForByte) {
  const std::string model = work_.file("lenet.pt");
  ASSERT_NO_FATAL_FAILURE(train_briefly(model, data_dir()));
  const auto with = [&](std::vector<std::string> args, const std::vector<std::string>& more) {
    args.insert(args.end(), more.begin(), more.end());
    return args;
  };
  const std::vector<std::string> base = {"curves",   "--model",        model, "--data-dir",
                                         data_dir(), "--dist-timeout", "60"};
  const std::vector<std::string> curves = with(base, {"--calib-size", "32", "--levels", "10"});
  const std::string alone = work_.file("alone.json");
  ASSERT_EQ(rdprune(with(curves, {"--no-cache", "--out", alone})).code, 0);
  for (const int size : {2, 3}) {
    const std::string out = work_.file(fmt::format("curves-{}.json", size));
    const std::vector<Result> ranks = several(size, with(curves, {"--no-cache", "--out", out}));
    for (int rank = 0; rank < size; ++rank) ASSERT_EQ(ranks[rank].code, 0) << rank << ": " << ranks[rank].err;
    EXPECT_EQ(read_file(out), read_file(alone)) << size << " processes";
    for (int rank = 1; rank < size; ++rank) EXPECT_EQ(ranks[rank].out, "");
  }
  // A cache that holds the first three layers (as an interrupted run leaves it): two processes
  // measure the other two and give the same file.
  const std::string cache = work_.file("cache");
  ASSERT_EQ(rdprune(with(curves, {"--cache-dir", cache, "--out", work_.file("cached.json")})).code, 0);
  const auto files = std::vector<std::filesystem::path>(std::filesystem::directory_iterator(cache), {});
  ASSERT_EQ(files.size(), 1u);
  auto json = nlohmann::json::parse(read_file(files[0].string()));
  auto& layers = json["curves"]["layers"];
  auto& costs = json["costs"];
  ASSERT_EQ(layers.size(), 5u);
  layers.erase(layers.begin() + 3, layers.end());
  costs.erase(costs.begin() + 3, costs.end());
  write_file_atomic(files[0].string(), json.dump());
  const std::string resumed = work_.file("resumed.json");
  const std::vector<Result> ranks = several(2, with(curves, {"--cache-dir", cache, "--out", resumed}));
  ASSERT_EQ(ranks[0].code, 0) << ranks[0].err;
  ASSERT_EQ(ranks[1].code, 0) << ranks[1].err;
  EXPECT_NE(ranks[0].err.find("reusing 3 layers"), std::string::npos) << ranks[0].err;
  EXPECT_EQ(read_file(resumed), read_file(alone));
  // Rank 0 wrote the whole cache again.
  EXPECT_EQ(nlohmann::json::parse(read_file(files[0].string()))["curves"]["layers"].size(), 5u);

  // A process killed on the way: the other ends within --dist-timeout with one line, and the same
  // command run again finishes from what the cache holds. (One image per forward pass makes the
  // measurement long enough to be killed in; the batch size is not part of the cache's key.)
  const std::string slow_cache = work_.file("slow-cache");
  const std::vector<std::string> slow =
      with(base, {"--calib-size", "256", "--cache-dir", slow_cache, "--batch-size", "1", "--levels", "100",
                  "--plain", "--out", work_.file("slow.json")});
  const std::vector<Result> killed = several(2, slow, "timeout -s KILL 3");
  EXPECT_EQ(killed[1].code, 128 + 9) << killed[1].err;
  expect_error(killed[0], 1, "rank 0 of 2: ");
  EXPECT_FALSE(std::filesystem::exists(work_.file("slow.json")));
  const std::vector<std::string> again = with(base, {"--calib-size", "256", "--cache-dir", slow_cache,
                                                     "--levels", "100", "--out", work_.file("slow.json")});
  const std::vector<Result> rerun = several(2, again);
  ASSERT_EQ(rerun[0].code, 0) << rerun[0].err;
  ASSERT_EQ(rerun[1].code, 0) << rerun[1].err;
  EXPECT_EQ(curves_from_json(read_file(work_.file("slow.json")), "slow.json").layers.size(), 5u);
}

TEST_F(Cli, TrainFinetuneAndRunOverSeveralProcessesEqualOneProcess) {
  const auto with = [](std::vector<std::string> args, const std::vector<std::string>& more) {
    args.insert(args.end(), more.begin(), more.end());
    return args;
  };
  const auto figures = [&](const std::string& model) {
    const Result eval = rdprune({"eval", "--model", model, "--data-dir", data_dir(), "--json"});
    EXPECT_EQ(eval.code, 0) << eval.err;
    return nlohmann::json::parse(eval.out);
  };
  // train: 20 steps of an MLP on global batches of 48 (shards of 24, or 16).
  const std::vector<std::string> train = {
      "train",      "--arch",   "mlp",    "--steps",        "20", "--batch-size", "48", "--no-augment",
      "--data-dir", data_dir(), "--json", "--dist-timeout", "60"};
  const std::string alone = work_.file("alone.pt");
  const Result one = rdprune(with(train, {"--out", alone}));
  ASSERT_EQ(one.code, 0) << one.err;
  const auto expected = figures(alone);
  for (const int size : {2, 3}) {
    const std::string model = work_.file(fmt::format("mlp-{}.pt", size));
    const std::vector<Result> ranks = several(size, with(train, {"--out", model}));
    for (int rank = 0; rank < size; ++rank) ASSERT_EQ(ranks[rank].code, 0) << rank << ": " << ranks[rank].err;
    for (int rank = 1; rank < size; ++rank) EXPECT_EQ(ranks[rank].out, "");
    EXPECT_NEAR(nlohmann::json::parse(ranks[0].out).at("train_loss").get<double>(),
                nlohmann::json::parse(one.out).at("train_loss").get<double>(), 1e-5);
    const auto got = figures(model);
    EXPECT_EQ(got.at("top1"), expected.at("top1")) << size;
    EXPECT_NEAR(got.at("loss").get<double>(), expected.at("loss").get<double>(), 1e-5) << size;
  }
  // finetune: the same from the trained model.
  const std::vector<std::string> finetune = {
      "finetune",     "--model",    alone,      "--steps",        "10", "--batch-size", "32",
      "--no-augment", "--data-dir", data_dir(), "--dist-timeout", "60"};
  ASSERT_EQ(rdprune(with(finetune, {"--out", work_.file("tuned-1.pt")})).code, 0);
  const std::vector<Result> tuned = several(2, with(finetune, {"--out", work_.file("tuned-2.pt")}));
  ASSERT_EQ(tuned[0].code, 0) << tuned[0].err;
  ASSERT_EQ(tuned[1].code, 0) << tuned[1].err;
  EXPECT_NEAR(figures(work_.file("tuned-2.pt")).at("loss").get<double>(),
              figures(work_.file("tuned-1.pt")).at("loss").get<double>(), 1e-5);
  // run: curves, plan, fine-tuning and evaluation shared out; rank 0 alone writes the run.
  const std::vector<std::string> run = {"run",
                                        "--model",
                                        alone,
                                        "--sparsity",
                                        "0.6",
                                        "--calib-size",
                                        "32",
                                        "--levels",
                                        "10",
                                        "--finetune-steps",
                                        "5",
                                        "--data-dir",
                                        data_dir(),
                                        "--json",
                                        "--dist-timeout",
                                        "60"};
  const std::string solo = work_.file("run-1");
  const std::string pair = work_.file("run-2");
  const Result by_one = rdprune(with(run, {"--out-dir", solo}));
  ASSERT_EQ(by_one.code, 0) << by_one.err;
  const std::vector<Result> by_two = several(2, with(run, {"--out-dir", pair}));
  ASSERT_EQ(by_two[0].code, 0) << by_two[0].err;
  ASSERT_EQ(by_two[1].code, 0) << by_two[1].err;
  EXPECT_EQ(by_two[1].out, "");
  EXPECT_EQ(read_file(pair + "/round-1/curves.json"), read_file(solo + "/round-1/curves.json"));
  EXPECT_EQ(read_file(pair + "/round-1/plan.json"), read_file(solo + "/round-1/plan.json"));
  const auto a = nlohmann::json::parse(by_one.out);
  const auto b = nlohmann::json::parse(by_two[0].out);
  EXPECT_EQ(b.at("sparsity_achieved"), a.at("sparsity_achieved"));
  EXPECT_EQ(b.at("top1_before_finetune"), a.at("top1_before_finetune"));
  EXPECT_NEAR(b.at("loss").get<double>(), a.at("loss").get<double>(), 1e-4);
  // Run again, the two processes resume the finished round from rank 0's files.
  const std::vector<Result> again = several(2, with(run, {"--out-dir", pair}));
  ASSERT_EQ(again[0].code, 0) << again[0].err;
  ASSERT_EQ(again[1].code, 0) << again[1].err;
  EXPECT_TRUE(nlohmann::json::parse(again[0].out).at("rounds")[0].at("resumed").get<bool>());
  // A process killed during training: the others end in one line naming it, and no model is written.
  std::vector<std::string> long_train = with(train, {"--out", work_.file("killed.pt")});
  *(std::find(long_train.begin(), long_train.end(), "--steps") + 1) = "100000";
  // Three processes, the last killed: both others name it.
  const std::vector<Result> killed = several(3, long_train, "timeout -s KILL 3");
  EXPECT_EQ(killed[2].code, 128 + 9) << killed[2].err;
  expect_error(killed[0], 1, "rank 0 of 3: lost rank 2 (it ended or stopped answering: ");
  expect_error(killed[1], 1, "rank 1 of 3: lost rank 2 (it ended or stopped answering: ");
  EXPECT_FALSE(std::filesystem::exists(work_.file("killed.pt")));
  // A process that stops answering (SIGSTOP; killed 8 s later): the other gives up after
  // --dist-timeout, in one line.
  std::vector<std::string> hung_train = long_train;
  *(std::find(hung_train.begin(), hung_train.end(), "--dist-timeout") + 1) = "4";
  const std::vector<Result> hung = several(2, hung_train, "timeout --foreground -k 8 -s STOP 3");
  EXPECT_EQ(hung[1].code, 128 + 9) << hung[1].err;
  expect_error(hung[0], 1, "rank 0 of 2: lost rank 1 (it ended or stopped answering: ");
  // Gloo's reason says it was the timeout (after 4 s), not the stopped process's death (after 8):
  // "Application timeout caused pair closure" or "Timed out waiting 4000ms ...", by where it waited.
  std::string reason = hung[0].err;
  std::transform(reason.begin(), reason.end(), reason.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  EXPECT_TRUE(reason.find("timeout") != std::string::npos || reason.find("timed out") != std::string::npos)
      << hung[0].err;
  // Flags checked before anything runs.
  expect_error(rdprune(with(train, {"--out", work_.file("x.pt"), "--bn-stats", "median"})), 2,
               "--bn-stats: expected mean or rank0, got 'median'");
  expect_error(rdprune(with(train, {"--out", work_.file("x.pt"), "--device", "tpu"})), 2,
               "--device tpu: expected cpu, cuda or cuda:N");
  // No such device: none here, or not that many where there are GPUs.
  expect_error(rdprune(with(train, {"--out", work_.file("x.pt"), "--device", "cuda:999"})), 2,
               "--device cuda:999: ");
}

TEST_F(Cli, ModelAndDataMustFit) {
  const std::string model = work_.file("mlp.pt");
  ASSERT_EQ(
      rdprune({"train", "--arch", "mlp", "--steps", "2", "--data-dir", data_dir(), "--out", model}).code, 0);
  TempDir cifar;
  testing::write_cifar_dataset(cifar.path(), 1, 4);
  expect_error(rdprune({"eval", "--model", model, "--dataset", "cifar10", "--data-dir", cifar.path()}), 1,
               "1x28x28");
  // Every command names the model that does not fit, and a forward pass that fails says on what.
  for (std::vector<std::string> args : {std::vector<std::string>{"curves", "--out", work_.file("c.json")},
                                        {"run", "--sparsity", "0.5", "--out-dir", work_.file("r")},
                                        {"finetune", "--steps", "1", "--out", work_.file("f.pt")}}) {
    args.insert(args.begin() + 1, {"--model", model, "--dataset", "cifar10", "--data-dir", cifar.path()});
    expect_error(rdprune(args), 1, model + ": model takes 1x28x28 inputs");
  }
  expect_error(rdprune({"info", "--model", model, "--input-shape", "3,32,32"}), 1,
               model + ": forward pass failed on input 1x3x32x32");
}

TEST_F(Cli, CurvesAllocatePruneFlow) {
  const std::string model = work_.file("mlp.pt");
  ASSERT_EQ(rdprune({"train", "--arch", "mlp", "--steps", "20", "--no-augment", "--data-dir", data_dir(),
                     "--out", model})
                .code,
            0);
  const std::string curves = work_.file("curves.json");
  const Result measured = rdprune({"curves", "--model", model, "--data-dir", data_dir(), "--calib-size", "32",
                                   "--levels", "20", "--no-tail", "--no-cache", "--out", curves, "--json"});
  ASSERT_EQ(measured.code, 0) << measured.err;
  EXPECT_EQ(nlohmann::json::parse(measured.out).at("points"), 3 * 22);  // 21 grid levels + one weight
  const auto curves_json = nlohmann::json::parse(read_file(curves));
  EXPECT_EQ(curves_json.at("schema"), "rdprune.curves/1");
  EXPECT_EQ(curves_json["layers"][0]["kept"].size(), 22u);

  const std::string plan = work_.file("plan.json");
  const Result allocated = rdprune({"allocate", "--method", "rd", "--curves", curves, "--sparsity", "0.9",
                                    "--out", plan, "--frontier", work_.file("frontier.csv"), "--json"});
  ASSERT_EQ(allocated.code, 0) << allocated.err;
  const auto plan_json = nlohmann::json::parse(read_file(plan));
  EXPECT_EQ(plan_json.at("schema"), "rdprune.plan/1");
  EXPECT_GE(plan_json.at("sparsity_achieved").get<double>(), 0.9);
  EXPECT_TRUE(plan_json.at("predicted_distortion").is_number());
  EXPECT_NE(read_file(work_.file("frontier.csv")).find("kept_weights,sparsity,distortion"),
            std::string::npos);

  const std::string pruned = work_.file("pruned.pt");
  const Result done = rdprune({"prune", "--model", model, "--plan", plan, "--out", pruned, "--json"});
  ASSERT_EQ(done.code, 0) << done.err;
  const auto info = nlohmann::json::parse(rdprune({"info", "--model", pruned, "--json"}).out);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_NEAR(info["layers"][i]["sparsity"].get<double>(), plan_json["layers"][i]["sparsity"].get<double>(),
                1e-12);
  }
  EXPECT_NEAR(info.at("sparsity").get<double>(), plan_json.at("sparsity_achieved").get<double>(), 1e-9);

  // Bad input: a target outside [0, 1), a plan for another model, broken curves files.
  expect_error(rdprune({"allocate", "--curves", curves, "--sparsity", "1.0", "--out", plan}), 2,
               "--sparsity");
  expect_error(rdprune({"allocate", "--curves", curves, "--sparsity", "-0.2", "--out", plan}), 2,
               "--sparsity");
  expect_error(
      rdprune({"allocate", "--method", "magic", "--curves", curves, "--sparsity", "0.5", "--out", plan}), 2,
      "unknown method");
  const std::string lenet = work_.file("lenet.pt");
  ASSERT_EQ(
      rdprune({"train", "--arch", "lenet5", "--steps", "1", "--data-dir", data_dir(), "--out", lenet}).code,
      0);
  expect_error(rdprune({"prune", "--model", lenet, "--plan", plan, "--out", work_.file("x.pt")}), 1,
               "another model");
  auto broken = curves_json;
  broken["layers"][1]["distortion"][3] = nullptr;
  write_file_atomic(work_.file("nan.json"), broken.dump());
  expect_error(rdprune({"allocate", "--curves", work_.file("nan.json"), "--sparsity", "0.5", "--out", plan}),
               1, "nan");
  broken = curves_json;
  broken["layers"][1]["distortion"][3] = -1.0;
  write_file_atomic(work_.file("neg.json"), broken.dump());
  expect_error(rdprune({"allocate", "--curves", work_.file("neg.json"), "--sparsity", "0.5", "--out", plan}),
               1, "negative");
  broken = curves_json;
  broken["layers"][0]["sparsity"][5] = 0.01;
  write_file_atomic(work_.file("grid.json"), broken.dump());
  expect_error(rdprune({"allocate", "--curves", work_.file("grid.json"), "--sparsity", "0.5", "--out", plan}),
               1, "not increasing");
  write_file_atomic(work_.file("trunc.json"), read_file(curves).substr(0, 100));
  expect_error(
      rdprune({"allocate", "--curves", work_.file("trunc.json"), "--sparsity", "0.5", "--out", plan}), 1,
      "trunc.json");

  // A plan that empties a layer is applied only with consent: the plan's own (made with
  // --allow-empty) or prune's --allow-empty.
  auto emptying = plan_json;
  emptying["layers"][0]["kept"] = 0;
  write_file_atomic(work_.file("empty.json"), emptying.dump());
  expect_error(rdprune({"prune", "--model", model, "--plan", work_.file("empty.json"), "--out", pruned}), 1,
               "would keep none of its");
  ASSERT_EQ(rdprune({"prune", "--model", model, "--plan", work_.file("empty.json"), "--out", pruned,
                     "--allow-empty"})
                .code,
            0);
  const auto emptied = nlohmann::json::parse(rdprune({"info", "--model", pruned, "--json"}).out);
  EXPECT_EQ(emptied["layers"][0]["sparsity"].get<double>(), 1.0);
  emptying["allow_empty"] = true;
  write_file_atomic(work_.file("consented.json"), emptying.dump());
  EXPECT_EQ(
      rdprune({"prune", "--model", model, "--plan", work_.file("consented.json"), "--out", pruned}).code, 0);
  ASSERT_EQ(
      rdprune({"allocate", "--curves", curves, "--sparsity", "0.9", "--allow-empty", "--out", plan}).code, 0);
  EXPECT_TRUE(nlohmann::json::parse(read_file(plan)).at("allow_empty").get<bool>());
}

TEST_F(Cli, ChannelPlansWriteSmallerModels) {
  const std::string model = work_.file("lenet.pt");
  train_briefly(model, data_dir());
  const std::string curves = work_.file("channels.json");
  const Result measured =
      rdprune({"curves", "--granularity", "channel", "--model", model, "--data-dir", data_dir(),
               "--calib-size", "32", "--levels", "8", "--no-cache", "--out", curves, "--json"});
  ASSERT_EQ(measured.code, 0) << measured.err;
  EXPECT_EQ(nlohmann::json::parse(measured.out).at("granularity"), "channel");
  const auto curves_json = nlohmann::json::parse(read_file(curves));
  ASSERT_EQ(curves_json.at("layers").size(), 4u);  // conv1, conv2, fc1, fc2
  EXPECT_EQ(curves_json["layers"][0]["weights"], 6);

  const std::string plan = work_.file("plan.json");
  const Result allocated = rdprune(
      {"allocate", "--curves", curves, "--budget", "flops", "--sparsity", "0.5", "--out", plan, "--json"});
  ASSERT_EQ(allocated.code, 0) << allocated.err;
  EXPECT_GE(nlohmann::json::parse(allocated.out).at("flops_sparsity_achieved").get<double>(), 0.5);

  const std::string smaller = work_.file("smaller.pt");
  const Result pruned = rdprune({"prune", "--model", model, "--plan", plan, "--out", smaller, "--json"});
  ASSERT_EQ(pruned.code, 0) << pruned.err;
  const auto result = nlohmann::json::parse(pruned.out);
  EXPECT_GE(result.at("flops_removed").get<double>(), 0.5);
  const auto plan_json = nlohmann::json::parse(read_file(plan));
  EXPECT_NEAR(result.at("flops_removed").get<double>(), plan_json.at("flops_sparsity_achieved").get<double>(),
              1e-9);
  const auto info = nlohmann::json::parse(rdprune({"info", "--model", smaller, "--json"}).out);
  EXPECT_EQ(info["layers"][0]["shape"][0], plan_json["layers"][0]["kept"]);
  EXPECT_EQ(info.at("total_weights").get<double>(), result.at("weights").get<double>());  // the plan's costs
  EXPECT_EQ(info.at("sparsity").get<double>(), 0.0);  // removed, not masked
  EXPECT_EQ(rdprune({"eval", "--model", smaller, "--data-dir", data_dir()}).code, 0);

  // The uniform rule, from the model alone.
  const Result uniform =
      rdprune({"allocate", "--method", "uniform", "--granularity", "channel", "--model", model, "--budget",
               "flops", "--sparsity", "0.5", "--out", work_.file("u.json")});
  ASSERT_EQ(uniform.code, 0) << uniform.err;
  ASSERT_EQ(
      rdprune({"prune", "--model", model, "--plan", work_.file("u.json"), "--out", work_.file("u.pt")}).code,
      0);

  // Global ranking, from the model alone; network slimming needs batch norms (LeNet-5 has none).
  const Result global =
      rdprune({"allocate", "--method", "global", "--granularity", "channel", "--model", model, "--budget",
               "flops", "--sparsity", "0.5", "--out", work_.file("g.json"), "--json"});
  ASSERT_EQ(global.code, 0) << global.err;
  EXPECT_GE(nlohmann::json::parse(global.out).at("flops_sparsity_achieved").get<double>(), 0.5);
  ASSERT_EQ(
      rdprune({"prune", "--model", model, "--plan", work_.file("g.json"), "--out", work_.file("g.pt")}).code,
      0);
  expect_error(rdprune({"allocate", "--method", "slimming", "--granularity", "channel", "--model", model,
                        "--sparsity", "0.5", "--out", work_.file("s.json")}),
               1, "no batch norm");
  expect_error(rdprune({"allocate", "--method", "slimming", "--model", model, "--sparsity", "0.5", "--out",
                        work_.file("s.json")}),
               2, "--method");
  const std::string resnet = work_.file("resnet20.pt");
  ASSERT_EQ(
      rdprune({"train", "--arch", "resnet20", "--steps", "1", "--data-dir", data_dir(), "--out", resnet})
          .code,
      0);
  const Result slimming =
      rdprune({"allocate", "--method", "slimming", "--granularity", "channel", "--model", resnet, "--budget",
               "flops", "--sparsity", "0.3", "--out", work_.file("s.json"), "--json"});
  ASSERT_EQ(slimming.code, 0) << slimming.err;
  EXPECT_EQ(nlohmann::json::parse(read_file(work_.file("s.json"))).at("criterion"), "bn_scale");
  const Result slimmed = rdprune(
      {"prune", "--model", resnet, "--plan", work_.file("s.json"), "--out", work_.file("s.pt"), "--json"});
  ASSERT_EQ(slimmed.code, 0) << slimmed.err;
  EXPECT_GE(nlohmann::json::parse(slimmed.out).at("flops_removed").get<double>(), 0.3);

  // The vit's channel groups are its heads and its MLPs' hidden units: rd's curves over them, a
  // FLOPs budget kept, and a smaller model whose q, k and v keep whole heads of 16 features.
  const std::string vit = work_.file("vit.pt");
  ASSERT_EQ(rdprune({"train", "--arch", "vit", "--steps", "1", "--data-dir", data_dir(), "--out", vit}).code,
            0);
  const std::string vit_curves = work_.file("vit-curves.json");
  ASSERT_EQ(rdprune({"curves", "--granularity", "channel", "--model", vit, "--data-dir", data_dir(),
                     "--calib-size", "16", "--levels", "4", "--no-cache", "--out", vit_curves})
                .code,
            0);
  ASSERT_EQ(rdprune({"allocate", "--granularity", "channel", "--curves", vit_curves, "--budget", "flops",
                     "--sparsity", "0.4", "--out", work_.file("vit-plan.json")})
                .code,
            0);
  const Result vit_pruned = rdprune({"prune", "--model", vit, "--plan", work_.file("vit-plan.json"), "--out",
                                     work_.file("vit-small.pt"), "--json"});
  ASSERT_EQ(vit_pruned.code, 0) << vit_pruned.err;
  EXPECT_GE(nlohmann::json::parse(vit_pruned.out).at("flops_removed").get<double>(), 0.4);
  const auto vit_info =
      nlohmann::json::parse(rdprune({"info", "--model", work_.file("vit-small.pt"), "--json"}).out);
  for (const auto& layer : vit_info.at("layers")) {
    const std::string name = layer.at("name");
    if (name.find(".attn.q") != std::string::npos) {
      EXPECT_EQ(layer.at("shape")[0].get<int64_t>() % 16, 0) << name;
    }
  }

  // Bad input: a budget below the smallest network, a plan for another model, weight curves for a
  // channel plan, an unknown granularity (a model without channel groups: test_script_channels.py).
  expect_error(rdprune({"allocate", "--curves", curves, "--sparsity", "0.999", "--out", plan}), 1,
               "below what the smallest network");
  const std::string mlp = work_.file("mlp.pt");
  ASSERT_EQ(rdprune({"train", "--arch", "mlp", "--steps", "1", "--data-dir", data_dir(), "--out", mlp}).code,
            0);
  expect_error(rdprune({"prune", "--model", mlp, "--plan", plan, "--out", work_.file("x.pt")}), 1,
               "another model");
  const std::string weights = work_.file("weights.json");
  ASSERT_EQ(rdprune({"curves", "--model", mlp, "--data-dir", data_dir(), "--calib-size", "16", "--levels",
                     "4", "--no-cache", "--out", weights})
                .code,
            0);
  expect_error(rdprune({"allocate", "--granularity", "channel", "--curves", weights, "--sparsity", "0.5",
                        "--out", plan}),
               2, "--granularity");
  expect_error(rdprune({"curves", "--granularity", "channel", "--estimator", "taylor", "--model", mlp,
                        "--data-dir", data_dir(), "--no-cache", "--out", work_.file("v.json")}),
               2, "--estimator");
  expect_error(rdprune({"curves", "--granularity", "filter", "--model", mlp, "--data-dir", data_dir(),
                        "--out", work_.file("v.json")}),
               2, "--granularity");
}

// compare and run take channel plans: every round's model is physically smaller, and every
// method's row stands beside the others.
TEST_F(Cli, CompareAndRunMakeChannelPlans) {
  const std::string model = work_.file("lenet.pt");
  ASSERT_NO_FATAL_FAILURE(train_briefly(model, data_dir()));
  const std::string out = work_.file("compare");
  const Result compared = rdprune({"compare",
                                   "--model",
                                   model,
                                   "--data-dir",
                                   data_dir(),
                                   "--granularity",
                                   "channel",
                                   "--methods",
                                   "rd,uniform,global,dense",
                                   "--budget",
                                   "flops",
                                   "--sparsities",
                                   "0.5",
                                   "--calib-size",
                                   "32",
                                   "--levels",
                                   "8",
                                   "--finetune-steps",
                                   "2",
                                   "--out-dir",
                                   out,
                                   "--json"});
  ASSERT_EQ(compared.code, 0) << compared.err;
  const auto results = nlohmann::json::parse(compared.out).at("results");
  ASSERT_EQ(results.size(), 4u);
  const double dense_weights = nlohmann::json::parse(rdprune({"info", "--model", model, "--json"}).out)
                                   .at("total_weights")
                                   .get<double>();
  for (const auto& cell : results) {
    const std::string method = cell.at("method");
    if (method == "dense") continue;
    EXPECT_LE(cell.at("flops_kept").get<double>(), 0.5 + 1e-9) << method;
    const std::string smaller = out + "/" + method + "-s0.5-r1/round-1/model.pt";
    const auto info = nlohmann::json::parse(rdprune({"info", "--model", smaller, "--json"}).out);
    EXPECT_NEAR(info.at("total_weights").get<double>() / dense_weights,
                1 - cell.at("sparsity_achieved").get<double>(), 1e-9)
        << method;
    EXPECT_EQ(info.at("sparsity").get<double>(), 0.0) << method;  // removed, not masked
  }
  // run: the same schedule, one method.
  const Result run = rdprune({"run", "--model", model, "--data-dir", data_dir(), "--granularity", "channel",
                              "--method", "uniform", "--budget", "flops", "--sparsity", "0.5", "--rounds",
                              "2", "--out-dir", work_.file("run"), "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_GE(nlohmann::json::parse(run.out).at("flops_sparsity_achieved").get<double>(), 0.5 - 1e-9)
      << run.out;
  EXPECT_EQ(nlohmann::json::parse(run.out).at("granularity"), "channel");
  // What channel plans cannot be.
  expect_error(rdprune({"compare", "--model", model, "--data-dir", data_dir(), "--granularity", "channel",
                        "--methods", "rd,lamp", "--out-dir", work_.file("bad")}),
               2, "lamp");
  expect_error(rdprune({"run", "--model", model, "--data-dir", data_dir(), "--granularity", "channel",
                        "--criterion", "wanda", "--sparsity", "0.5", "--out-dir", work_.file("bad")}),
               2, "criterion");
  expect_error(rdprune({"run", "--model", model, "--data-dir", data_dir(), "--granularity", "channel",
                        "--method", "slimming", "--sparsity", "0.5", "--out-dir", work_.file("bad2")}),
               1, "batch norm");
}

TEST_F(Cli, LatencyBudgetsMeasureTablesOnceAndKeepTheBudget) {
  const std::string model = work_.file("lenet.pt");
  ASSERT_NO_FATAL_FAILURE(train_briefly(model, data_dir()));
  // Small targets: the tables are timed while other tests run, and a busy machine narrows what
  // removing channels saves.
  const std::string cache = work_.file("cache");
  auto allocate = [&](std::vector<std::string> args, const std::string& out) {
    args.insert(args.end(),
                {"--granularity", "channel", "--model", model, "--budget", "latency", "--latency-grid", "3",
                 "--latency-batch", "64", "--cache-dir", cache, "--out", out, "--json"});
    args.insert(args.begin(), "allocate");
    return rdprune(args);
  };
  const std::string plan = work_.file("uniform.json");
  const Result first = allocate({"--method", "uniform", "--sparsity", "0.1"}, plan);
  ASSERT_EQ(first.code, 0) << first.err;
  const auto result = nlohmann::json::parse(first.out);
  EXPECT_EQ(result.at("budget"), "latency");
  EXPECT_GE(result.at("latency_sparsity_achieved").get<double>(), 0.1 - 1e-9);
  EXPECT_LE(result.at("kept_latency_seconds").get<double>(),
            0.9 * result.at("dense_latency_seconds").get<double>() * (1 + 1e-9));
  const auto written = nlohmann::json::parse(read_file(plan));
  EXPECT_EQ(written.at("budget"), "latency");
  EXPECT_TRUE(written.at("channel_costs")[0].contains("latency"));
  // The tables were cached: the same command reads them back and makes the same plan, where timing
  // them again would not.
  ASSERT_EQ(std::distance(std::filesystem::directory_iterator(cache), std::filesystem::directory_iterator()),
            1);
  const std::string again = work_.file("again.json");
  ASSERT_EQ(allocate({"--method", "uniform", "--sparsity", "0.1"}, again).code, 0);
  EXPECT_EQ(read_file(again), read_file(plan));
  ASSERT_EQ(rdprune({"prune", "--model", model, "--plan", plan, "--out", work_.file("small.pt")}).code, 0);

  // rd prices its channel curves by the tables; global ranking too.
  const std::string curves = work_.file("curves.json");
  ASSERT_EQ(rdprune({"curves", "--granularity", "channel", "--model", model, "--data-dir", data_dir(),
                     "--calib-size", "16", "--levels", "4", "--no-cache", "--out", curves})
                .code,
            0);
  const Result rd = allocate({"--curves", curves, "--sparsity", "0.05"}, work_.file("rd.json"));
  ASSERT_EQ(rd.code, 0) << rd.err;
  EXPECT_GE(nlohmann::json::parse(rd.out).at("latency_sparsity_achieved").get<double>(), 0.05 - 1e-9);
  EXPECT_EQ(allocate({"--method", "global", "--sparsity", "0.05"}, work_.file("g.json")).code, 0);

  // Bad input: a budget below the smallest network, a weight plan, run, rd without the model.
  expect_error(allocate({"--method", "uniform", "--sparsity", "0.999"}, work_.file("x.json")), 1,
               "below what the smallest network");
  expect_error(rdprune({"allocate", "--method", "global", "--model", model, "--budget", "latency",
                        "--sparsity", "0.5", "--out", work_.file("x.json")}),
               2, "--budget");
  expect_error(rdprune({"allocate", "--curves", curves, "--budget", "latency", "--sparsity", "0.5", "--out",
                        work_.file("x.json")}),
               2, "--model");
  expect_error(rdprune({"run", "--model", model, "--data-dir", data_dir(), "--budget", "latency",
                        "--sparsity", "0.5", "--out-dir", work_.file("run")}),
               2, "--budget");
}

TEST_F(Cli, BaselinesFinetuneRunCompareAdditivity) {
  const std::string model = work_.file("lenet.pt");
  ASSERT_EQ(rdprune({"train", "--arch", "lenet5", "--steps", "40", "--batch-size", "32", "--lr", "0.05",
                     "--no-augment", "--data-dir", data_dir(), "--out", model})
                .code,
            0);
  for (const std::string method : {"global", "lamp", "uniform", "uniform+", "erk"}) {
    const std::string plan = work_.file(method + ".json");
    const Result allocated = rdprune(
        {"allocate", "--method", method, "--model", model, "--sparsity", "0.9", "--out", plan, "--json"});
    ASSERT_EQ(allocated.code, 0) << method << allocated.err;
    EXPECT_GE(nlohmann::json::parse(allocated.out).at("sparsity_achieved").get<double>(), 0.9) << method;
  }
  const std::string pruned = work_.file("pruned.pt");
  ASSERT_EQ(rdprune({"prune", "--model", model, "--plan", work_.file("lamp.json"), "--out", pruned}).code, 0);
  const std::string tuned = work_.file("tuned.pt");
  const Result finetuned =
      rdprune({"finetune", "--model", pruned, "--data-dir", data_dir(), "--steps", "10", "--batch-size", "32",
               "--no-augment", "--bn-recalibrate", "--out", tuned, "--json"});
  ASSERT_EQ(finetuned.code, 0) << finetuned.err;
  EXPECT_EQ(nlohmann::json::parse(finetuned.out).at("steps"), 10);
  const auto before = nlohmann::json::parse(rdprune({"info", "--model", pruned, "--json"}).out);
  const auto after = nlohmann::json::parse(rdprune({"info", "--model", tuned, "--json"}).out);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(before["layers"][i]["sparsity"], after["layers"][i]["sparsity"]);

  // rd in two rounds with fine-tuning, on the fixture's images.
  const std::vector<std::string> rd_run = {
      "run",        "--model", model,      "--data-dir", data_dir(),         "--method", "rd",
      "--sparsity", "0.9",     "--rounds", "2",          "--finetune-steps", "5"};
  std::vector<std::string> seeded = rd_run;
  seeded.insert(seeded.end(), {"--calib-size", "32", "--levels", "20", "--seed", "3", "--out-dir",
                               work_.file("run"), "--json"});
  const Result run = rdprune(seeded);
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(nlohmann::json::parse(read_file(work_.file("run/settings.json"))).at("seed"), 3);
  const auto run_json = nlohmann::json::parse(run.out);
  EXPECT_GE(run_json.at("sparsity_achieved").get<double>(), 0.9);
  EXPECT_TRUE(run_json.at("top1").is_number());
  EXPECT_EQ(run_json.at("rounds").size(), 2u);
  EXPECT_TRUE(run_json.at("rounds")[1].at("measured_distortion").is_number());
  {
    // Every plan rd's refinement judged, all of them rd's own, and the one kept, are on record,
    // with what each round cost; the settings resolved from the preset are in the JSON.
    const auto metrics = nlohmann::json::parse(read_file(work_.file("run/round-2/metrics.json")));
    int chosen = 0;
    for (const auto& step : metrics.at("steps")) {
      chosen += step.at("chosen").get<bool>() ? 1 : 0;
      EXPECT_EQ(step.at("start"), "rd");
    }
    EXPECT_EQ(chosen, 1);
    EXPECT_EQ(metrics.at("cost").at("train_steps"), 5);
    // Nothing was in the cache, so nothing was reused.
    EXPECT_EQ(metrics.at("cost").at("reused_seconds").get<double>(), 0.0);
    EXPECT_EQ(run_json.at("rounds")[0].at("reused_seconds").get<double>(), 0.0);
    EXPECT_EQ(run_json.at("settings").at("allocator").at("metric"), "kl");
    EXPECT_EQ(run_json.at("settings").at("allocator").at("preset"), "default");
  }
  // --preset paper expands to the paper's values; a flag given wins over it.
  {
    std::vector<std::string> paper = rd_run;
    paper.insert(paper.end(), {"--calib-size", "32", "--levels", "5", "--preset", "paper", "--metric",
                               "worst", "--out-dir", work_.file("paper"), "--json"});
    const Result ran = rdprune(paper);
    ASSERT_EQ(ran.code, 0) << ran.err;
    const auto settings = nlohmann::json::parse(read_file(work_.file("paper/settings.json")));
    EXPECT_EQ(settings.at("allocator").at("preset"), "paper");
    EXPECT_EQ(settings.at("allocator").at("metric"), "worst");
    EXPECT_EQ(settings.at("allocator").at("tail"), false);
    EXPECT_EQ(settings.at("allocator").at("refine"), 0);
    // Resuming with another resolved value is refused, naming it.
    paper.erase(paper.end() - 5, paper.end() - 3);  // without --metric worst: the preset's mse
    expect_error(rdprune(paper), 2, "other settings (allocator.metric)");
  }
  // select judged by labels needs judging images: calibration images that take the whole training
  // split leave none.
  std::vector<std::string> swallowed = rd_run;
  swallowed[6] = "select";
  swallowed.insert(swallowed.end(), {"--levels", "5", "--calib-size", "1000000", "--out-dir",
                                     work_.file("all-calibration"), "--judge-size", "500", "--judge-by",
                                     "error", "--judge", "recovered:2", "--pool", "global,lamp"});
  expect_error(rdprune(swallowed), 1, "no images left to judge plans on");

  const std::string out = work_.file("compare");
  const Result compared = rdprune({"compare", "--model", model, "--data-dir", data_dir(), "--methods",
                                   "rd,uniform,lamp", "--sparsities", "0.5,0.8", "--calib-size", "32",
                                   "--levels", "20", "--out-dir", out, "--json"});
  ASSERT_EQ(compared.code, 0) << compared.err;
  const auto results = nlohmann::json::parse(compared.out).at("results");
  ASSERT_EQ(results.size(), 6u);
  for (const auto& cell : results) {
    EXPECT_GE(cell.at("sparsity_achieved").get<double>(), cell.at("sparsity_target").get<double>());
    EXPECT_TRUE(cell.at("top1").is_number());
    EXPECT_TRUE(cell.at("measured_distortion").is_number());
  }
  EXPECT_NE(read_file(out + "/results.csv")
                .find(",measured_distortion,seed,seconds,train_steps,judge_train_steps,forward_samples,"
                      "reused_seconds\n"),
            std::string::npos);
  for (const char* file : {"results.csv", "results.md", "results.json", "top1_vs_sparsity.gp",
                           "layer_sparsity.dat", "rd_curves.dat"}) {
    EXPECT_TRUE(std::filesystem::exists(out + "/" + file)) << file;
  }
  if (std::system("command -v gnuplot >/dev/null 2>&1") == 0) {
    EXPECT_TRUE(std::filesystem::exists(out + "/top1_vs_sparsity.png"));
  }

  {
    // Lists of rounds, fine-tuning steps and seeds: every cell at each, summarised over the seeds.
    const std::string grid = work_.file("grid");
    const std::vector<std::string> command = {
        "compare",      "--model",      model,    "--data-dir", data_dir(), "--methods", "uniform,lamp",
        "--sparsities", "0.5",          "--seed", "0,1",        "--rounds", "1,2",       "--finetune-steps",
        "0,2",          "--calib-size", "32",     "--out-dir",  grid,       "--json"};
    const Result run = rdprune(command);
    ASSERT_EQ(run.code, 0) << run.err;
    const auto json = nlohmann::json::parse(run.out);
    // Without fine-tuning nothing depends on the seed: those cells run for the first seed only.
    ASSERT_EQ(json.at("results").size(), 12u);
    EXPECT_EQ(json.at("test_samples").get<int64_t>(), 64);
    for (const char* cell : {"uniform-s0.5-r1-f0", "lamp-s0.5-r2-f2", "lamp-s0.5-r2-f2-seed1"}) {
      EXPECT_TRUE(std::filesystem::exists(grid + "/" + cell + "/settings.json")) << cell;
    }
    EXPECT_FALSE(std::filesystem::exists(grid + "/lamp-s0.5-r1-f0-seed1"));
    std::map<std::string, std::vector<double>> top1;  // by method, rounds and steps
    const auto key = [](const nlohmann::json& cell) {
      return fmt::format("{} r{} f{}", cell.at("method").get<std::string>(), cell.at("rounds").get<int>(),
                         cell.at("finetune_steps").get<int>());
    };
    for (const auto& cell : json.at("results")) top1[key(cell)].push_back(cell.at("top1").get<double>());
    ASSERT_EQ(top1.size(), 8u);
    const auto& summary = json.at("summary");
    ASSERT_EQ(summary.size(), 8u);
    for (size_t i = 0; i < summary.size(); ++i) {
      const auto& s = summary[i];
      const auto& values = top1[key(s)];
      EXPECT_EQ(s.at("seeds").get<size_t>(), values.size());
      EXPECT_EQ(values.size(), s.at("finetune_steps") == 0 ? 1u : 2u);
      EXPECT_NEAR(s.at("top1").get<double>(),
                  std::accumulate(values.begin(), values.end(), 0.0) / values.size(), 1e-12);
      EXPECT_EQ(s.at("best_other"), s.at("method") == "lamp" ? "uniform" : "lamp");
      // Settings in order, the two methods of each together: each one's lead is the other's, negated.
      if (i % 2 == 1) {
        EXPECT_EQ(key(s).substr(key(s).find(' ')), key(summary[i - 1]).substr(key(summary[i - 1]).find(' ')));
        EXPECT_NEAR(s.at("lead").get<double>() + summary[i - 1].at("lead").get<double>(), 0, 1e-12);
      }
    }
    EXPECT_NE(read_file(grid + "/results.md").find("best other method | lead |"), std::string::npos);
    // Every round keeps the final model's per-image outcomes, so every lead has its test sampling error.
    const std::string hits = grid + "/lamp-s0.5-r2-f2-seed1/round-2/test_hits.txt";
    ASSERT_TRUE(std::filesystem::exists(hits));
    EXPECT_EQ(read_file(hits).substr(0, 18), "rdprune.hits/1 64\n");
    for (const auto& s : summary) EXPECT_TRUE(s.at("lead_se_test").is_number());
    // A rerun resumes every cell and reports the same figures; outcomes a round lacks (it finished
    // before they were kept) are measured again from its model.
    std::filesystem::remove(hits);
    const Result again = rdprune(command);
    ASSERT_EQ(again.code, 0) << again.err;
    const auto json_again = nlohmann::json::parse(again.out);
    EXPECT_EQ(json_again.at("results"), json.at("results"));
    EXPECT_EQ(json_again.at("summary"), json.at("summary"));
    ASSERT_TRUE(std::filesystem::exists(hits));
    // A damaged record is measured again, with a warning, and replaced.
    const std::string recorded = read_file(hits);
    write_file_atomic(hits, recorded.substr(0, 40));
    const Result repaired = rdprune(command);
    ASSERT_EQ(repaired.code, 0) << repaired.err;
    EXPECT_NE(repaired.err.find("measuring again"), std::string::npos) << repaired.err;
    EXPECT_EQ(nlohmann::json::parse(repaired.out).at("summary"), json.at("summary"));
    EXPECT_EQ(read_file(hits), recorded);
  }

  const Result additivity =
      rdprune({"additivity", "--model", model, "--data-dir", data_dir(), "--calib-size", "32", "--levels",
               "20", "--random", "5", "--sparsities", "0.5,0.9", "--out-dir", work_.file("add"), "--json"});
  ASSERT_EQ(additivity.code, 0) << additivity.err;
  EXPECT_EQ(nlohmann::json::parse(additivity.out).at("points").size(), 7u);

  // Bad input: an unknown method, a sparsity list with a value outside [0, 1), repeated or malformed
  // list entries; then an output directory that is a file.
  const std::vector<std::array<std::string, 3>> bad_lists = {
      {"--methods", "rd,magic", "unknown method"},
      {"--sparsities", "0.5,1.2", "--sparsities"},
      {"--sparsities", "0.5,0.5", "--sparsities: 0.5 is listed twice"},
      {"--seed", "0,1,0", "--seed: 0 is listed twice"},
      {"--rounds", "1,x", "--rounds: expected a count"},
      {"--rounds", "0,2", "--rounds"}};
  for (const auto& [flag, value, message] : bad_lists) {
    expect_error(
        rdprune({"compare", "--model", model, "--data-dir", data_dir(), flag, value, "--out-dir", out}), 2,
        message);
  }
  expect_error(
      rdprune({"run", "--model", model, "--data-dir", data_dir(), "--sparsity", "0.5", "--out-dir", model}),
      2, "not a directory");
  // Each bad value of a run flag: exit 2 and a message naming it.
  const std::vector<std::array<std::string, 3>> bad_values = {
      {"--method", "magic", "unknown method"},
      {"--pool", "lamp,magic", "--pool: unknown method"},
      {"--pool", "lamp,select", "--pool: unknown method 'select'"},
      {"--judge", "some", "--judge: expected distortion or recovered:N"},
      {"--judge", "recovered:0", "--judge: expected distortion or recovered:N"},
      {"--preset", "xu", "--preset: unknown preset 'xu' (known: default, paper)"},
      {"--refine", "21", "--refine: expected a count in [0, 20]"},
      {"--exchanges", "21", "--exchanges: expected a count in [0, 20]"},
      {"--judge-size", "20000000", "--judge-size: expected a count in [0, 10000000]"},
      {"--judge-by", "accuracy", "--judge-by: expected distortion, loss or error, got 'accuracy'"},
      {"--holdout", "-3", "--holdout: expected a count in [0, 10000000]"},
      {"--holdout", "5000000", "--holdout: 5000000 images leave none to fine-tune on"},
      {"--seed", "0,1", "--seed"}};
  for (const auto& [flag, value, message] : bad_values) {
    expect_error(rdprune({"run", "--model", model, "--data-dir", data_dir(), flag, value, "--sparsity", "0.5",
                          "--out-dir", work_.file("x")}),
                 2, message);
  }
}

TEST_F(Cli, CompareDenseControlIsTheUnprunedModelThroughTheSameFineTuning) {
  const std::string model = work_.file("mlp.pt");
  ASSERT_EQ(
      rdprune({"train", "--arch", "mlp", "--steps", "20", "--data-dir", data_dir(), "--out", model}).code, 0);
  const std::string out = work_.file("control");
  const Result run = rdprune({"compare", "--model", model, "--data-dir", data_dir(), "--methods",
                              "lamp,dense", "--sparsities", "0.5,0.8", "--finetune-steps", "3", "--seed",
                              "0,1", "--out-dir", out, "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  // Its progress speaks of the control, not of the rule that runs it at target 0.
  EXPECT_NE(run.err.find("compare: dense control, unpruned"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("round 1/1: dense target 0.0000"), std::string::npos) << run.err;
  EXPECT_EQ(run.err.find("global"), std::string::npos) << run.err;
  const auto json = nlohmann::json::parse(run.out);
  // Once per seed, not per sparsity.
  ASSERT_EQ(json.at("results").size(), 6u);
  std::map<uint64_t, double> control;  // top-1 by seed
  for (const auto& cell : json.at("results")) {
    if (cell.at("method") != "dense") continue;
    EXPECT_EQ(cell.at("sparsity_target").get<double>(), 0);
    EXPECT_EQ(cell.at("sparsity_achieved").get<double>(), 0);
    EXPECT_EQ(cell.at("flops_kept").get<double>(), 1);
    // One round: before fine-tuning it is the dense model itself.
    EXPECT_DOUBLE_EQ(cell.at("top1_before_finetune").get<double>(), json.at("dense_top1").get<double>());
    control[cell.at("seed").get<uint64_t>()] = cell.at("top1").get<double>();
  }
  ASSERT_EQ(control.size(), 2u);
  EXPECT_TRUE(std::filesystem::exists(out + "/dense-r1/settings.json"));
  EXPECT_TRUE(std::filesystem::exists(out + "/dense-r1-seed1/settings.json"));
  EXPECT_FALSE(std::filesystem::exists(out + "/dense-s0.5-r1"));
  // The control's fine-tuning is the schedule `run` gives a model it does not prune.
  const Result alone =
      rdprune({"run", "--model", model, "--data-dir", data_dir(), "--method", "global", "--sparsity", "0",
               "--finetune-steps", "3", "--seed", "1", "--out-dir", work_.file("alone"), "--json"});
  ASSERT_EQ(alone.code, 0) << alone.err;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(alone.out).at("top1").get<double>(), control[1]);
  // Each pruned setting is measured against it, seed by seed; the control is nobody's rival.
  for (const auto& s : json.at("summary")) {
    EXPECT_TRUE(s.at("best_other").is_null()) << s;
    if (s.at("method") == "dense") {
      EXPECT_TRUE(s.at("vs_dense").is_null());
      continue;
    }
    double expected = 0;
    for (const auto& cell : json.at("results")) {
      if (cell.at("method") == "lamp" && cell.at("sparsity_target") == s.at("sparsity_target"))
        expected += (cell.at("top1").get<double>() - control[cell.at("seed").get<uint64_t>()]) / 2;
    }
    EXPECT_NEAR(s.at("vs_dense").get<double>(), expected, 1e-12) << s;
    EXPECT_TRUE(s.at("vs_dense_se").is_number()) << s;
  }
  EXPECT_NE(read_file(out + "/results.md").find("| vs dense |"), std::string::npos);
  EXPECT_NE(read_file(out + "/top1_vs_sparsity.gp").find("title 'dense fine-tuned'"), std::string::npos);
}

// select is its own row, every row says what it cost, and --equal-compute gives each baseline the
// fine-tuning steps select spent judging.
TEST_F(Cli, CompareReportsEachMethodsCostAndTheEqualComputeControl) {
  const std::string model = work_.file("mlp.pt");
  ASSERT_EQ(
      rdprune({"train", "--arch", "mlp", "--steps", "20", "--data-dir", data_dir(), "--out", model}).code, 0);
  const std::string out = work_.file("cost");
  const Result run = rdprune({"compare",
                              "--model",
                              model,
                              "--data-dir",
                              data_dir(),
                              "--methods",
                              "rd,select,global",
                              "--sparsities",
                              "0.8",
                              "--finetune-steps",
                              "3",
                              "--calib-size",
                              "32",
                              "--levels",
                              "5",
                              "--pool",
                              "rd,global",
                              "--judge",
                              "recovered:2",
                              "--judge-by",
                              "error",
                              "--judge-size",
                              "64",
                              "--refine",
                              "0",
                              "--equal-compute",
                              "--out-dir",
                              out,
                              "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  const auto json = nlohmann::json::parse(run.out);
  std::map<std::string, nlohmann::json> cells;
  for (const auto& cell : json.at("results")) cells[cell.at("method")] = cell;
  ASSERT_EQ(cells.size(), 4u) << run.out;
  for (const auto& [method, cell] : cells) {
    EXPECT_GT(cell.at("seconds").get<double>(), 0) << method;
    EXPECT_GT(cell.at("forward_samples").get<int64_t>(), 0) << method;
  }
  EXPECT_EQ(cells["rd"].at("train_steps"), 3);
  EXPECT_EQ(cells["global"].at("train_steps"), 3);
  // select judged two plans after 2 steps each, then fine-tuned 3.
  EXPECT_EQ(cells["select"].at("judge_train_steps"), 4);
  EXPECT_EQ(cells["select"].at("train_steps"), 7);
  EXPECT_EQ(cells["global@select"].at("train_steps"), 7);
  EXPECT_EQ(cells["global@select"].at("judge_train_steps"), 0);
  // The cells share the curve cache: select's pool takes rd's curves from it, charged at what rd's
  // cell spent measuring them, so select states at least rd's cost.
  EXPECT_EQ(cells["rd"].at("reused_seconds").get<double>(), 0.0);
  EXPECT_GT(cells["select"].at("reused_seconds").get<double>(), 0.0);
  EXPECT_LE(cells["select"].at("reused_seconds").get<double>(), cells["rd"].at("seconds").get<double>());
  EXPECT_GT(cells["select"].at("forward_samples").get<int64_t>(),
            cells["rd"].at("forward_samples").get<int64_t>());
  const std::string csv = read_file(out + "/results.csv");
  EXPECT_NE(csv.find(",seconds,train_steps,judge_train_steps,forward_samples"), std::string::npos) << csv;
  EXPECT_NE(read_file(out + "/results.md").find("| seconds | train steps (judging) |"), std::string::npos);
  // --equal-compute needs select to match.
  expect_error(rdprune({"compare", "--model", model, "--data-dir", data_dir(), "--methods", "rd,global",
                        "--equal-compute", "--out-dir", work_.file("nothing")}),
               2, "--equal-compute: needs select");
}

TEST_F(Cli, KeepDenseHoldsForEveryMethod) {
  const std::string model = work_.file("mlp.pt");
  ASSERT_EQ(
      rdprune({"train", "--arch", "mlp", "--steps", "5", "--data-dir", data_dir(), "--out", model}).code, 0);
  const auto fc3_kept = [](const std::string& plan_file) {
    const auto plan = nlohmann::json::parse(read_file(plan_file));
    for (const auto& layer : plan.at("layers")) {
      if (layer.at("name") == "fc3")
        return std::make_pair(layer.at("kept").get<int64_t>(), layer.at("weights").get<int64_t>());
    }
    return std::make_pair(int64_t{-1}, int64_t{-2});
  };
  const std::string plan = work_.file("plan.json");
  ASSERT_EQ(rdprune({"allocate", "--method", "lamp", "--model", model, "--sparsity", "0.9", "--keep-dense",
                     "fc3", "--out", plan})
                .code,
            0);
  EXPECT_EQ(fc3_kept(plan).first, fc3_kept(plan).second);
  expect_error(rdprune({"allocate", "--method", "lamp", "--model", model, "--sparsity", "0.9", "--keep-dense",
                        "fc3,fc3", "--out", plan}),
               2, "--keep-dense: layer 'fc3' is named twice");
  // fc1 holds 235,200 of the 266,200 weights: more than 10% of them.
  expect_error(
      rdprune({"allocate", "--method", "uniform+", "--model", model, "--sparsity", "0.9", "--keep-dense",
               "fc1", "--out", plan}),
      1, "uniform+: the weights its rule and the layers kept dense keep alone exceed the weights budget");
  const std::string out = work_.file("cmp");
  const Result run =
      rdprune({"compare", "--model", model, "--data-dir", data_dir(), "--methods", "global,uniform,erk,dense",
               "--sparsities", "0.9", "--finetune-steps", "1", "--keep-dense", "fc3", "--out-dir", out});
  ASSERT_EQ(run.code, 0) << run.err;
  for (const std::string method : {"global", "uniform", "erk"}) {
    const auto [kept, weights] = fc3_kept(out + "/" + method + "-s0.9-r1/round-1/plan.json");
    EXPECT_EQ(kept, weights) << method;
    const auto settings = nlohmann::json::parse(read_file(out + "/" + method + "-s0.9-r1/settings.json"));
    EXPECT_EQ(settings.at("keep_dense"), nlohmann::json::array({"fc3"})) << method;
  }
  // The control prunes nothing, so its record is the one a comparison without the flag makes.
  EXPECT_FALSE(nlohmann::json::parse(read_file(out + "/dense-r1/settings.json")).contains("keep_dense"));
  // A cell made without the flag is not resumed as if it had kept the layer.
  const Result without =
      rdprune({"run", "--model", model, "--data-dir", data_dir(), "--method", "global", "--sparsity", "0.9",
               "--finetune-steps", "1", "--out-dir", out + "/global-s0.9-r1"});
  expect_error(without, 2, "other settings (keep_dense)");
}

TEST_F(Cli, TransformersCriteriaAndTheLayerwiseRules) {
  const std::string model = work_.file("vit.pt");
  ASSERT_EQ(rdprune({"train", "--arch", "vit", "--steps", "3", "--batch-size", "32", "--optimizer", "adamw",
                     "--lr", "0.001", "--data-dir", data_dir(), "--out", model})
                .code,
            0);
  const auto info = nlohmann::json::parse(rdprune({"info", "--model", model, "--json"}).out);
  ASSERT_EQ(info.at("layers").size(), 26u);
  EXPECT_EQ(info["layers"][1]["name"], "blocks.0.attn.q");
  EXPECT_EQ(info["layers"][1]["flops_per_weight"], 17);  // 16 patches and the class token
  EXPECT_EQ(info.at("stages"), 10);

  // alphapruning needs no data; owl and wanda need calibration images.
  const std::string plan = work_.file("plan.json");
  for (const std::string method : {"alphapruning", "owl"}) {
    const Result allocated =
        rdprune({"allocate", "--method", method, "--model", model, "--data-dir", data_dir(), "--calib-size",
                 "32", "--sparsity", "0.7", "--out", plan, "--json"});
    ASSERT_EQ(allocated.code, 0) << method << allocated.err;
    const double achieved = nlohmann::json::parse(allocated.out).at("sparsity_achieved").get<double>();
    EXPECT_GE(achieved, 0.7) << method;
    EXPECT_LT(achieved, 0.701) << method;
    EXPECT_EQ(nlohmann::json::parse(read_file(plan)).at("method"), method);
  }
  const Result wanda =
      rdprune({"allocate", "--method", "uniform", "--criterion", "wanda", "--model", model, "--data-dir",
               data_dir(), "--calib-size", "32", "--sparsity", "0.5", "--out", plan});
  ASSERT_EQ(wanda.code, 0) << wanda.err;
  EXPECT_EQ(nlohmann::json::parse(read_file(plan)).at("criterion"), "wanda");
  const std::string pruned = work_.file("pruned.pt");
  const Result applied = rdprune({"prune", "--model", model, "--plan", plan, "--data-dir", data_dir(),
                                  "--calib-size", "32", "--out", pruned, "--json"});
  ASSERT_EQ(applied.code, 0) << applied.err;
  EXPECT_NEAR(nlohmann::json::parse(applied.out).at("sparsity_achieved").get<double>(), 0.5, 1e-3);

  // --prune-embeddings: the position embedding is a layer too (stage 0, no multiply-accumulates);
  // a model whose embedding was pruned is refused without the flag, which would let it grow back.
  const auto with_embeddings =
      nlohmann::json::parse(rdprune({"info", "--model", model, "--prune-embeddings", "--json"}).out);
  ASSERT_EQ(with_embeddings.at("layers").size(), 27u);
  const auto& embedding = with_embeddings["layers"][26];
  EXPECT_EQ(embedding["name"], "pos_embed");
  EXPECT_EQ(embedding["type"], "pos_embedding");
  EXPECT_EQ(embedding["weights"], 17 * 64);
  EXPECT_EQ(embedding["flops_per_weight"], 0);
  EXPECT_EQ(embedding["stage"], 0);
  const std::string uniform = work_.file("uniform.json");
  ASSERT_EQ(rdprune({"allocate", "--method", "uniform", "--model", model, "--prune-embeddings", "--sparsity",
                     "0.5", "--out", uniform})
                .code,
            0);
  const std::string pruned_embedding = work_.file("pruned-embedding.pt");
  expect_error(rdprune({"prune", "--model", model, "--plan", uniform, "--out", pruned_embedding}), 1,
               "pos_embed");
  ASSERT_EQ(
      rdprune({"prune", "--model", model, "--plan", uniform, "--prune-embeddings", "--out", pruned_embedding})
          .code,
      0);
  const auto pruned_info = nlohmann::json::parse(
      rdprune({"info", "--model", pruned_embedding, "--prune-embeddings", "--json"}).out);
  EXPECT_NEAR(pruned_info["layers"][26]["sparsity"].get<double>(), 0.5, 1e-3);
  expect_error(rdprune({"info", "--model", pruned_embedding}), 1,
               "holds a mask for a position embedding, which is a prunable layer only when embeddings are "
               "pruned");

  // rd and the rules of the LLM era side by side, with wanda's order, one shot, embedding included.
  const std::string out = work_.file("cmp");
  const Result compared = rdprune({"compare",
                                   "--model",
                                   model,
                                   "--data-dir",
                                   data_dir(),
                                   "--methods",
                                   "rd,owl,alphapruning",
                                   "--criterion",
                                   "wanda",
                                   "--sparsities",
                                   "0.7",
                                   "--calib-size",
                                   "32",
                                   "--levels",
                                   "8",
                                   "--refine",
                                   "0",
                                   "--eval-limit",
                                   "32",
                                   "--prune-embeddings",
                                   "--out-dir",
                                   out});
  ASSERT_EQ(compared.code, 0) << compared.err;
  for (const std::string method : {"rd", "owl", "alphapruning"}) {
    const auto round = nlohmann::json::parse(read_file(out + "/" + method + "-s0.7-r1/round-1/plan.json"));
    EXPECT_EQ(round.at("criterion"), "wanda") << method;
    EXPECT_EQ(round.at("layers").size(), 27u) << method;
    EXPECT_EQ(nlohmann::json::parse(read_file(out + "/" + method + "-s0.7-r1/settings.json"))
                  .at("prune_embeddings"),
              true);
    EXPECT_EQ(nlohmann::json::parse(read_file(out + "/" + method + "-s0.7-r1/settings.json")).at("criterion"),
              "wanda");
  }

  // Bad input, each in one line.
  expect_error(rdprune({"allocate", "--method", "uniform", "--model", model, "--sparsity", "0.5",
                        "--criterion", "taylor", "--out", plan}),
               2, "--criterion: unknown criterion 'taylor'");
  expect_error(rdprune({"run", "--model", model, "--method", "rd", "--sparsity", "0.5", "--synthetic",
                        "--criterion", "wanda", "--out-dir", work_.file("syn")}),
               2, "--criterion: wanda weighs weights by their inputs on real images");
  expect_error(rdprune({"run", "--model", model, "--method", "owl", "--sparsity", "0.5", "--synthetic",
                        "--out-dir", work_.file("syn")}),
               2, "--method: owl scores outliers on real images");
  expect_error(rdprune({"allocate", "--method", "owl", "--model", model, "--sparsity", "0.5", "--keep-dense",
                        "blocks.0.attn.qkv", "--data-dir", data_dir(), "--out", plan}),
               2, "--keep-dense: no layer named 'blocks.0.attn.qkv'");
  expect_error(rdprune({"allocate", "--method", "alphapruning", "--model", model, "--sparsity", "0.5",
                        "--alpha-fit", "mid", "--out", plan}),
               2, "--alpha-fit: expected peak or median");
  expect_error(rdprune({"allocate", "--method", "owl", "--model", model, "--sparsity", "0.5", "--owl-lambda",
                        "0.9", "--data-dir", data_dir(), "--out", plan}),
               2, "--owl-lambda");
}

TEST_F(Cli, OutputsAreCheckedBeforeTheWorkAndResumesRefuseWhatTheyCannotTrust) {
  const std::string model = work_.file("mlp.pt");
  ASSERT_EQ(
      rdprune({"train", "--arch", "mlp", "--steps", "5", "--data-dir", data_dir(), "--out", model}).code, 0);
  // Every output path is checked before the work: nothing trains, and nothing is half written.
  const Result untrained = rdprune(
      {"train", "--arch", "mlp", "--steps", "5", "--data-dir", data_dir(), "--out", work_.file("no/m.pt")});
  expect_error(untrained, 1, "does not exist");
  EXPECT_EQ(untrained.err.find("train:"), std::string::npos) << untrained.err;
  const std::string plan = work_.file("plan.json");
  const std::string frontier_dir = work_.file("none") + "/frontier.csv";
  expect_error(rdprune({"allocate", "--method", "global", "--model", model, "--sparsity", "0.5", "--out",
                        plan, "--frontier", frontier_dir}),
               1, "does not exist");
  EXPECT_FALSE(std::filesystem::exists(plan));
  ASSERT_EQ(
      rdprune({"allocate", "--method", "global", "--model", model, "--sparsity", "0.5", "--out", plan}).code,
      0);
  const std::string pruned = work_.file("pruned.pt");
  expect_error(rdprune({"prune", "--model", model, "--plan", plan, "--out", pruned, "--export-dense",
                        work_.file("none") + "/dense.pt"}),
               1, "does not exist");
  EXPECT_FALSE(std::filesystem::exists(pruned));
  // Renaming over a device would replace it with a file.
  if (std::filesystem::is_character_file("/dev/null")) {
    expect_error(rdprune({"prune", "--model", model, "--plan", plan, "--out", "/dev/null"}), 1,
                 "not a regular file");
    EXPECT_TRUE(std::filesystem::is_character_file("/dev/null"));
  }
  // Numbers a plan file cannot mean.
  std::string text = read_file(plan);
  const auto at = text.find("\"kept\"");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, text.find_first_of(",}", at) - at, "\"kept\": 1e30");
  write_file_atomic(work_.file("huge.json"), text);
  expect_error(rdprune({"prune", "--model", model, "--plan", work_.file("huge.json"), "--out", pruned}), 1,
               "kept: expected a whole number");
  // Flags out of range.
  expect_error(
      rdprune({"finetune", "--model", model, "--data-dir", data_dir(), "--steps", "-1", "--out", pruned}), 2,
      "--steps");
  expect_error(rdprune({"info", "--model", model, "--input-shape", "1,28"}), 2, "C,H,W");
  expect_error(
      rdprune({"train", "--arch", "mlp", "--steps", "2", "--epochs", "1", "--out", work_.file("m.pt")}), 2,
      "--epochs");
  // A rule that cannot be kept at the target is an error, not another rule's plan under its name.
  expect_error(rdprune({"allocate", "--method", "uniform+", "--model", model, "--sparsity", "0.9995", "--out",
                        work_.file("u.json")}),
               1, "uniform+: the weights its rule keeps alone exceed");
  expect_error(rdprune({"train", "--arch", "mlp", "--dataset", "synthetic", "--num-classes", "0", "--steps",
                        "1", "--out", work_.file("m.pt")}),
               2, "--num-classes");
  for (const auto& empty :
       {std::vector<std::string>{"--sparsity", ""}, std::vector<std::string>{"--sparsity="}}) {
    std::vector<std::string> args = {"allocate", "--method", "global", "--model", model, "--out", plan};
    args.insert(args.end(), empty.begin(), empty.end());
    expect_error(rdprune(args), 2, "--sparsity: expected a value");
  }
  expect_error(rdprune({"train", "--arch", "mlp", "--dataset", "imagefolder", "--data-dir", data_dir(),
                        "--image-size", "0", "--steps", "1", "--out", work_.file("m.pt")}),
               2, "--image-size");
  expect_error(rdprune({"run", "--model", model, "--data-dir", data_dir(), "--sparsity", "0.5",
                        "--finetune-steps", "2", "--finetune-lr", "nan", "--out-dir", work_.file("lr")}),
               2, "--finetune-lr");

  // A layer --keep-dense cannot find is a usage error before the directory is touched.
  const std::vector<std::string> run = {
      "run",    "--model",    model, "--data-dir", data_dir(),       "--method",
      "global", "--sparsity", "0.5", "--out-dir",  work_.file("run")};
  std::vector<std::string> keep = run;
  keep[6] = "rd";
  keep.insert(keep.end(), {"--keep-dense", "nosuch", "--levels", "4", "--calib-size", "16"});
  expect_error(rdprune(keep), 2, "--keep-dense: no layer named 'nosuch'");
  EXPECT_FALSE(std::filesystem::exists(work_.file("run")));
  ASSERT_EQ(rdprune(run).code, 0);
  // The thread count is on record; another one resumes, and is named (torch's sums change order).
  const int threads = nlohmann::json::parse(read_file(work_.file("run/settings.json"))).at("threads");
  EXPECT_EQ(threads, 1);
  const Result same = rdprune(run);
  ASSERT_EQ(same.code, 0) << same.err;
  EXPECT_EQ(same.err.find("threads"), std::string::npos) << same.err;
  std::vector<std::string> more_threads = run;
  more_threads.insert(more_threads.end(), {"--threads", std::to_string(threads + 1)});
  const Result other_threads = rdprune(more_threads);
  ASSERT_EQ(other_threads.code, 0) << other_threads.err;
  EXPECT_NE(other_threads.err.find("was started with " + std::to_string(threads) +
                                   " threads and resumes with " + std::to_string(threads + 1)),
            std::string::npos)
      << other_threads.err;
  // A record from before the count was kept resumes without a note; a count that is not one is refused.
  auto settings = nlohmann::json::parse(read_file(work_.file("run/settings.json")));
  settings.erase("threads");
  write_file_atomic(work_.file("run/settings.json"), settings.dump());
  const Result unrecorded = rdprune(more_threads);
  ASSERT_EQ(unrecorded.code, 0) << unrecorded.err;
  EXPECT_EQ(unrecorded.err.find("threads"), std::string::npos) << unrecorded.err;
  settings["threads"] = "two";
  write_file_atomic(work_.file("run/settings.json"), settings.dump());
  expect_error(rdprune(run), 1, "threads: expected a thread count");
  settings["threads"] = threads;
  write_file_atomic(work_.file("run/settings.json"), settings.dump());
  // ... nor one on other data: other images, or the same ones normalised otherwise.
  std::vector<std::string> other_data = run;
  other_data.insert(other_data.end(), {"--mean", "0.5", "--std", "0.1"});
  expect_error(rdprune(other_data), 2, "started on other data");
  // A run started from another model is not resumed as if it were this one's.
  const std::string other = work_.file("other.pt");
  ASSERT_EQ(
      rdprune({"train", "--arch", "mlp", "--steps", "6", "--data-dir", data_dir(), "--out", other}).code, 0);
  std::vector<std::string> from_other = run;
  from_other[2] = other;
  expect_error(rdprune(from_other), 2, "started from another model");
  // Damaged records of a finished round are named, with the remedy.
  const std::string metrics = work_.file("run/round-1/metrics.json");
  const std::string recorded = read_file(metrics);
  write_file_atomic(metrics, recorded.substr(0, recorded.size() / 2));
  expect_error(rdprune(run), 1, "metrics.json: damaged");
  expect_error(rdprune(run), 1, "to run that round again");
  // ... and so are figures no run writes, or another round's record.
  for (const auto& [key, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"sparsity_achieved", -3.0}, {"round", 5}, {"sparsity_target", 0.75}}) {
    auto edited = nlohmann::json::parse(recorded);
    edited[key] = value;
    write_file_atomic(metrics, edited.dump());
    expect_error(rdprune(run), 1, "holds figures no run of round 1 writes");
  }
  auto edited = nlohmann::json::parse(recorded);
  edited["finetuned"]["top1"] = 7.5;
  write_file_atomic(metrics, edited.dump());
  expect_error(rdprune(run), 1, "holds figures no run of round 1 writes");
  // A loss that was not finite is recorded as null, and such a round resumes.
  edited = nlohmann::json::parse(recorded);
  edited["pruned"]["loss"] = nullptr;
  write_file_atomic(metrics, edited.dump());
  const Result null_loss = rdprune(run);
  EXPECT_EQ(null_loss.code, 0) << null_loss.err;
  write_file_atomic(metrics, recorded);
  const std::string plan_file = work_.file("run/round-1/plan.json");
  const std::string planned = read_file(plan_file);
  write_file_atomic(plan_file, planned.substr(0, 30));
  expect_error(rdprune(run), 1, "plan.json");
  write_file_atomic(plan_file, planned);
  const std::string model_file = work_.file("run/round-1/model.pt");
  write_file_atomic(model_file, read_file(model_file).substr(0, 2000));
  const Result truncated = rdprune(run);
  expect_error(truncated, 1, "round-1/model.pt: not a rdprune checkpoint");
  expect_error(truncated, 1, "to run that round again");
}

TEST_F(Cli, NoOutputOverwritesAnInputAndNoValueIsAnOption) {
  const std::string model = work_.file("mlp.pt");
  ASSERT_EQ(
      rdprune({"train", "--arch", "mlp", "--steps", "5", "--data-dir", data_dir(), "--out", model}).code, 0);
  const std::string plan = work_.file("plan.json");
  ASSERT_EQ(
      rdprune({"allocate", "--method", "global", "--model", model, "--sparsity", "0.5", "--out", plan}).code,
      0);
  const std::string curves = work_.file("curves.json");
  ASSERT_EQ(rdprune({"curves", "--model", model, "--data-dir", data_dir(), "--calib-size", "16", "--levels",
                     "4", "--no-cache", "--out", curves})
                .code,
            0);
  const std::string kept_model = read_file(model);
  const std::string kept_plan = read_file(plan);
  const std::string kept_curves = read_file(curves);
  // An output that names an input, by the same path or another one to the same file.
  const std::string same_model = work_.path() + "/./mlp.pt";
  const std::vector<std::vector<std::string>> destroying = {
      {"curves", "--model", model, "--data-dir", data_dir(), "--calib-size", "16", "--levels", "4",
       "--no-cache", "--out", same_model},
      {"allocate", "--method", "global", "--model", model, "--sparsity", "0.5", "--out", model},
      {"allocate", "--curves", curves, "--sparsity", "0.5", "--out", curves},
      {"allocate", "--curves", curves, "--sparsity", "0.5", "--out", plan, "--frontier", curves},
      {"prune", "--model", model, "--plan", plan, "--out", plan},
      {"eval", "--model", model, "--data-dir", data_dir(), "--hits", same_model},
      {"eval", "--model", model, "--data-dir", data_dir(), "--hits",
       data_dir() + "/t10k-labels-idx1-ubyte.gz"},
      {"train", "--arch", "mlp", "--steps", "1", "--data-dir", data_dir(), "--out",
       data_dir() + "/train-images-idx3-ubyte.gz"}};
  for (const auto& args : destroying) expect_error(rdprune(args), 2, "writing it would destroy the input");
  // Two outputs in one file: the second would replace the first.
  expect_error(rdprune({"allocate", "--curves", curves, "--sparsity", "0.5", "--out", work_.file("p.json"),
                        "--frontier", work_.file("p.json")}),
               2, "give each output its own file");
  expect_error(rdprune({"prune", "--model", model, "--plan", plan, "--out", work_.file("x.pt"),
                        "--export-dense", work_.file("x.pt")}),
               2, "give each output its own file");
  EXPECT_FALSE(std::filesystem::exists(work_.file("p.json")));
  EXPECT_FALSE(std::filesystem::exists(work_.file("x.pt")));
  EXPECT_EQ(read_file(model), kept_model);
  EXPECT_EQ(read_file(plan), kept_plan);
  EXPECT_EQ(read_file(curves), kept_curves);

  // A flag that takes a value followed by another flag: no file named "--json".
  const std::string cwd = std::filesystem::current_path().string();
  expect_error(rdprune({"prune", "--model", model, "--plan", plan, "--out", "--json"}), 2,
               "--out: expected a value, got the option --json");
  expect_error(rdprune({"eval", "--model", model, "--data-dir", data_dir(), "--hits", "--limit", "10"}), 2,
               "--hits: expected a value");
  EXPECT_FALSE(std::filesystem::exists(cwd + "/--json"));
  EXPECT_FALSE(std::filesystem::exists(cwd + "/--limit"));

  // A model in a pipe is refused, not waited on (a pipe with no writer would block forever).
  const std::string pipe = work_.file("pipe");
  ASSERT_EQ(mkfifo(pipe.c_str(), 0600), 0);
  expect_error(rdprune({"info", "--model", pipe}), 1, "not a regular file");
  expect_error(rdprune({"prune", "--model", pipe, "--plan", plan, "--out", work_.file("q.pt")}), 1,
               "not a regular file");

  // Values of flags the chosen method does not use are still checked, and lists name nothing twice.
  const auto with = [&](std::vector<std::string> extra, const std::string& method = "global") {
    std::vector<std::string> args = {"run",  "--model",    model, "--data-dir", data_dir(),     "--method",
                                     method, "--sparsity", "0.5", "--out-dir",  work_.file("r")};
    args.insert(args.end(), extra.begin(), extra.end());
    return rdprune(args);
  };
  expect_error(with({"--optimizer", "foo"}), 2, "--optimizer");
  expect_error(with({"--finetune-lr", "nan"}), 2, "--finetune-lr");
  expect_error(with({"--metric", "foo"}), 2, "--metric");
  expect_error(with({"--estimator", "foo"}), 2, "--estimator");
  expect_error(with({"--level-batch", "0"}), 2, "--level-batch");
  expect_error(with({"--max-memory", "-5"}), 2, "--max-memory");
  expect_error(with({"--pool", "global,global"}, "select"), 2, "--pool: global is listed twice");
  expect_error(rdprune({"additivity", "--model", model, "--data-dir", data_dir(), "--sparsities", "0.8,0.8",
                        "--out-dir", work_.file("a")}),
               2, "0.8 is listed twice");
  EXPECT_FALSE(std::filesystem::exists(work_.file("r")));

  // Outputs that are not finite are no measurement; the last update of a fine-tune is checked too.
  expect_error(rdprune({"eval", "--model", model, "--data-dir", data_dir(), "--std", "1e-300"}), 1,
               "outputs NaN logits");
  expect_error(rdprune({"finetune", "--model", model, "--data-dir", data_dir(), "--steps", "1", "--lr",
                        "1e30", "--out", work_.file("diverged.pt")}),
               1, "training diverged");
  EXPECT_FALSE(std::filesystem::exists(work_.file("diverged.pt")));
  // Help is given whatever else the line holds.
  EXPECT_EQ(rdprune({"eval", "--help", "--bogus"}).code, 0);

  // A model replaced by the model made from it loses nothing: pruning and fine-tuning in place.
  ASSERT_EQ(rdprune({"prune", "--model", model, "--plan", plan, "--out", same_model}).code, 0);
  const auto pruned = nlohmann::json::parse(rdprune({"info", "--model", model, "--json"}).out);
  EXPECT_NEAR(pruned.at("sparsity").get<double>(), 0.5, 1e-3);
  const Result tuned =
      rdprune({"finetune", "--model", model, "--data-dir", data_dir(), "--steps", "1", "--out", model});
  ASSERT_EQ(tuned.code, 0) << tuned.err;
  EXPECT_NEAR(
      nlohmann::json::parse(rdprune({"info", "--model", model, "--json"}).out).at("sparsity").get<double>(),
      0.5, 1e-3);
}

TEST_F(Cli, ErrorsInJsonModeAreJsonToo) {
  const Result run = rdprune({"info", "--model", work_.file("missing.pt"), "--json"});
  EXPECT_EQ(run.code, 1);
  const auto json = nlohmann::json::parse(run.out);
  EXPECT_EQ(json.at("exit_code"), 1);
  EXPECT_NE(json.at("error").get<std::string>().find("missing.pt"), std::string::npos);
}

}  // namespace
}  // namespace rdprune
