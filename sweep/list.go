package sweep

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
)

// List writes the runs a `dt sweep` would consider, one per line with its seed and
// parameters and, when the sweep directory exists and matches, its status. It changes
// nothing on disk.
func List(w io.Writer, root string, s *Sweep, only Filter, fresh bool) error {
	dir, exists := Locate(root, s)
	d := &Dir{Path: dir, Sweep: s, state: map[runKey]*RunState{}}
	where := dir + " (new)"
	switch {
	case exists && fresh:
		where = fmt.Sprintf("a new directory beside %s (--fresh)", dir)
	case exists:
		if b, err := os.ReadFile(filepath.Join(dir, FileMeta)); err == nil {
			var m meta
			if json.Unmarshal(b, &m) == nil && m.Hash != s.Hash() {
				where = fmt.Sprintf("%s, which holds a different sweep (%s): dt sweep would refuse it without --fresh",
					dir, strings.Join(diffIdentity(m.Identity, s.identity()), "; "))
			} else {
				where = dir + " (resuming)"
				if err := d.loadState(); err != nil {
					return err
				}
			}
		}
	}
	runs := s.Runs()
	sel := 0
	for _, r := range runs {
		if only.Match(r) {
			sel++
		}
	}
	fmt.Fprintf(w, "sweep %s: %d points × %d repeats = %d runs", s.Name, len(s.Points), s.Repeats, len(runs))
	if !only.Empty() {
		fmt.Fprintf(w, ", %d selected by --only %s", sel, only)
	}
	fmt.Fprintf(w, "\ndirectory: %s\n", where)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "RUN\tSEED\tSTATUS\tPARAMETERS\n")
	for _, r := range runs {
		if !only.Match(r) {
			continue
		}
		st := d.State(r)
		status := st.Status
		if st.Attempts > 1 {
			status += fmt.Sprintf(" (%d attempts)", st.Attempts)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", r.Name(), r.Seed, status, r.Point.Label())
	}
	return tw.Flush()
}
