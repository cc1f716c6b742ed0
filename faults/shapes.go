package faults

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/dtlab/dt/topology"
)

// PartitionShape draws one of Jepsen's partition shapes over nodes with r:
//
//   - random-halves: shuffled, cut into two halves (the smaller first) that cannot talk.
//   - majorities-ring: shuffled into a ring; each node hears only itself and the next
//     nodes of the ring up to a majority, so every node sees a majority but no two see
//     the same one. One-way cuts: a node drops what comes from the nodes it does not hear.
//   - bridge: shuffled, cut into two halves with one node in the middle that both halves
//     still reach.
func PartitionShape(mode string, nodes []string, r *rand.Rand) ([]topology.Cut, error) {
	n := slices.Clone(nodes)
	r.Shuffle(len(n), func(i, j int) { n[i], n[j] = n[j], n[i] })
	switch mode {
	case "random-halves":
		if len(n) < 2 {
			return nil, fmt.Errorf("random-halves needs at least 2 nodes, got %v", nodes)
		}
		a, b := n[:len(n)/2], n[len(n)/2:]
		return []topology.Cut{{A: sorted(a), B: sorted(b)}}, nil
	case "bridge":
		if len(n) < 3 {
			return nil, fmt.Errorf("bridge needs at least 3 nodes, got %v", nodes)
		}
		mid := len(n) / 2
		return []topology.Cut{{A: sorted(n[:mid]), B: sorted(n[mid+1:])}}, nil
	case "majorities-ring":
		if len(n) < 3 {
			return nil, fmt.Errorf("majorities-ring needs at least 3 nodes, got %v", nodes)
		}
		maj := len(n)/2 + 1
		var cuts []topology.Cut
		for i, x := range n {
			hears := map[string]bool{}
			for k := 0; k < maj; k++ {
				hears[n[(i+k)%len(n)]] = true
			}
			var deaf []string
			for _, y := range n {
				if !hears[y] {
					deaf = append(deaf, y)
				}
			}
			if len(deaf) > 0 {
				cuts = append(cuts, topology.Cut{A: sorted(deaf), B: []string{x}, OneWay: true})
			}
		}
		return cuts, nil
	}
	return nil, fmt.Errorf("unknown partition mode %q: valid are %s", mode, strings.Join(PartitionModes, ", "))
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
