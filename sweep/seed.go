package sweep

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"strconv"
)

// formatVersion changes whenever the meaning of a sweep (its expansion or seed
// derivation) changes, so an old sweep directory is never resumed with new semantics.
const formatVersion = "dt-sweep/1"

// DeriveSeed is the seed of run (point key, repeat) of a sweep with base seed base: the
// first 53 bits of SHA-256(format version, base, key, repeat), never 0 (0 asks
// experiment.Run for a random seed) and exact in JSON.
func DeriveSeed(base int64, key string, repeat int) int64 {
	h := sha256.New()
	h.Write([]byte(formatVersion + "\x00seed\x00"))
	h.Write([]byte(strconv.FormatInt(base, 10) + "\x00" + key + "\x00" + strconv.Itoa(repeat)))
	s := int64(binary.BigEndian.Uint64(h.Sum(nil)[:8]) & (1<<53 - 1))
	if s == 0 {
		s = 1
	}
	return s
}

// identity is what a sweep directory's results depend on: everything but the name, the
// plots and the file's formatting.
type identity struct {
	Format  string         `json:"format"`
	Base    map[string]any `json:"base"` // the full experiment.Config after the base
	Axes    []axisIdentity `json:"axes"`
	Zip     [][]string     `json:"zip,omitempty"`
	Repeats int            `json:"repeats"`
	Seed    int64          `json:"seed"`
}

type axisIdentity struct {
	Name   string   `json:"name"`
	Values []string `json:"values"`
}

func (s *Sweep) identity() identity {
	base := s.Base
	base.Seed, base.ResultsRoot = 0, ""
	m := map[string]any{}
	b, _ := json.Marshal(base)
	_ = json.Unmarshal(b, &m)
	id := identity{Format: formatVersion, Base: m, Zip: s.Zip, Repeats: s.Repeats, Seed: s.Seed}
	for _, a := range s.Axes {
		ai := axisIdentity{Name: a.Name}
		for _, v := range a.Values {
			ai.Values = append(ai.Values, FormatValue(v))
		}
		id.Axes = append(id.Axes, ai)
	}
	return id
}

// Hash identifies what the sweep's results depend on (hex SHA-256). Two files with the
// same hash may share a sweep directory; comments, name and plots do not count.
func (s *Sweep) Hash() string {
	b, _ := json.Marshal(s.identity())
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
