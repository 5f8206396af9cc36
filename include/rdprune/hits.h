// Per-image top-1 outcomes of a model on a test split: which images it classified correctly, in
// dataset order. Two models evaluated on the same images are compared pair by pair with them, so a
// difference in top-1 carries its own sampling error. Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rdprune {

// The file format (test_hits.txt, docs/formats.md): "rdprune.hits/1 N\n" and a line of N
// characters, '1' for an image classified correctly and '0' for one that was not.
std::string hits_to_text(const std::vector<uint8_t>& hits);
// Throws Error naming `where` on a wrong header, count or character.
std::vector<uint8_t> hits_from_text(const std::string& text, const std::string& where);

// Top-1 of `mine` minus top-1 of `theirs` on the same n images, and the standard error of that
// difference from the sampling of the images. With one pair it is the paired, McNemar-style
// variance ((b + c) / n - d^2) / n, b and c the images only one of the two classifies correctly.
// Over k pairs (seeds) on the same images, each image's difference is first averaged over the
// pairs: the variance of those averages over the images, / n. (What varies from pair to pair on
// one image is counted here and again in the spread of the pairs' differences, so combined with
// that spread the error is slightly conservative.)
struct PairedDifference {
  double difference = 0;
  double standard_error = 0;
};
// Throws Error when there are no pairs, or outcomes differ in length or are empty.
PairedDifference paired_difference_over_runs(const std::vector<std::vector<uint8_t>>& mine,
                                             const std::vector<std::vector<uint8_t>>& theirs);
PairedDifference paired_difference(const std::vector<uint8_t>& mine, const std::vector<uint8_t>& theirs);

}  // namespace rdprune
