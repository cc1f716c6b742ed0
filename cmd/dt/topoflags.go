package main

import (
	"fmt"
	"strings"

	"github.com/dtlab/dt/topology"
	"github.com/spf13/cobra"
)

// topoFlags are the topology options shared by dt up and dt run.
type topoFlags struct {
	nodes    int
	clients  int
	datapath string
}

func (f *topoFlags) register(c *cobra.Command) {
	c.Flags().IntVarP(&f.nodes, "number-nodes", "n", 3, "number of server nodes (s1..sN)")
	c.Flags().IntVar(&f.clients, "number-clients", 1, "number of client nodes (c1..cM)")
	c.Flags().StringVar(&f.datapath, "datapath", "auto", "OVS datapath: auto (kernel module if present, else userspace), system, netdev")
}

func (f *topoFlags) build(name string) (topology.Spec, error) {
	return topology.Build(name, topology.BuildOptions{Servers: f.nodes, Clients: f.clients})
}

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
