package main

import (
	"fmt"

	"github.com/dtlab/dt/topology"
)

// printNodes shows the nodes of a live topology.
func printNodes(live *topology.Live) {
	fmt.Printf("topology %s up: run %s, datapath %s\n", live.Spec.Name, live.State.RunID, live.State.Datapath)
	for _, n := range live.Spec.Nodes {
		fmt.Printf("  %-4s %-7s %-12s netns %s\n", n.Name, n.Role, n.IP, topology.NetnsName(live.State.RunID, n.Name))
	}
}
