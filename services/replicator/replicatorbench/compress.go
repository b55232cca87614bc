package replicatorbench

import (
	"fmt"
	"io"
	"time"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/services/replicator"
)

// Compress measures each codec on the corpus, compressing events one
// by one and as envelopes of perEnvelope events: the ratio (raw bytes over
// stored bytes, counting events left uncompressed at their size) and the
// compression and decompression speed.
func Compress(events, size, perEnvelope int, progress io.Writer) ([]bench.Result, error) {
	corpus := Corpus(events, size)
	var raw int64
	for _, e := range corpus {
		raw += int64(len(e))
	}
	var results []bench.Result
	for _, codec := range []replicator.Compression{replicator.S2, replicator.Zstd, replicator.Gzip} {
		for _, envelope := range []bool{false, true} {
			name := "compress-" + codec.String() + "-single"
			var units [][]byte
			if envelope {
				name = fmt.Sprintf("compress-%s-envelope%d", codec, perEnvelope)
				for i := 0; i < len(corpus); i += perEnvelope {
					part := corpus[i:min(i+perEnvelope, len(corpus))]
					units = append(units, replicator.EncodeEnvelope(part))
				}
			} else {
				units = corpus
			}
			prog := bench.NewProgress(progress, name, int64(len(units)))
			var lat bench.Latencies
			var stored int64
			out := make([][]byte, len(units))
			// encs[i] is how out[i] is stored: left as is when it would
			// not shrink.
			encs := make([]replicator.Compression, len(units))
			start := time.Now()
			for i, u := range units {
				t0 := time.Now()
				c := codec.Compress(u)
				lat.Add(time.Since(t0))
				encs[i] = codec
				if c == nil {
					c, encs[i] = u, replicator.NoCompression
				}
				out[i] = c
				stored += int64(len(c))
				prog.Add(1)
			}
			enc := time.Since(start)
			prog.Stop()
			dstart := time.Now()
			for i, c := range out {
				d, err := encs[i].Decompress(c)
				if err != nil || len(d) != len(units[i]) {
					return results, fmt.Errorf("%s: unit %d does not round-trip: %v", name, i, err)
				}
			}
			dec := time.Since(dstart)
			r := bench.Result{Name: name, Extra: map[string]float64{
				"ratio":           float64(raw) / float64(stored),
				"mb_per_s":        float64(raw) / 1e6 / enc.Seconds(),
				"decode_mb_per_s": float64(raw) / 1e6 / dec.Seconds(),
			}}
			r.Finish(int64(len(corpus)), enc, &lat)
			results = append(results, r)
		}
	}
	return results, nil
}
