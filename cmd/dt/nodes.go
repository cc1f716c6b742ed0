package main

import (
	"fmt"
	"strings"

	"github.com/dtlab/dt/topology"
)

// printNodes shows the nodes of a live topology.
func printNodes(live *topology.Live) {
	fmt.Printf("topology %s up: run %s, datapath %s\n", live.Spec.Name, live.State.RunID, live.State.Datapath)
	for _, n := range live.Spec.Nodes {
		fmt.Printf("  %-4s %-7s %-12s netns %s\n", n.Name, n.Role, n.IP, topology.NetnsName(live.State.RunID, n.Name))
	}
}

// splitGroup parses "s1,s2" into node names.
func splitGroup(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
