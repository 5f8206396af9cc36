// A zip archive's record sizes checked against the file before LibTorch reads it. torch.save and
// TorchScript write zip archives, and LibTorch allocates each record at the size the archive's
// central directory claims: a damaged one could ask for any amount of memory. Torch-free.
#pragma once

#include <string>

namespace rdprune {

// When `path` starts as a zip archive ("PK\3\4"), checks that its central directory lies inside
// the file and that no record claims more bytes than the file could hold (stored records: their
// compressed size; deflated: 1032 times it, deflate's ceiling). Throws Error saying what is
// damaged ("damaged archive: record 3 claims ..."), for the caller to put after the file's name
// and what it was reading it as. A file that is no zip archive passes (its reader judges it).
void check_zip_records(const std::string& path);

}  // namespace rdprune
