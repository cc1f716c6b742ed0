// Command durability writes files with and without fsync into a directory, and reads
// back what a power cut left of them: the small program dt's end-to-end tests run
// through a member's disk layer around a power-loss fault.
//
//	durability write DIR   # a.synced (fsynced), b.unsynced (never), c.appended (fsynced, then appended to)
//	durability check DIR   # prints a JSON object: file name -> its content, or null when it is gone
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// What write leaves, and what a power cut must leave of it.
const (
	synced   = "written and fsynced\n"
	unsynced = "written, never fsynced\n"
	appended = "appended after the fsync\n"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: durability write|check DIR")
		os.Exit(2)
	}
	dir := os.Args[2]
	var err error
	switch os.Args[1] {
	case "write":
		err = write(dir)
	case "check":
		err = check(dir)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "durability:", err)
		os.Exit(1)
	}
}

func write(dir string) error {
	put := func(name, content string, sync bool) (*os.File, error) {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		if _, err := f.WriteString(content); err != nil {
			return f, err
		}
		if sync {
			return f, f.Sync()
		}
		return f, nil
	}
	a, err := put("a.synced", synced, true)
	if err != nil {
		return err
	}
	a.Close()
	b, err := put("b.unsynced", unsynced, false)
	if err != nil {
		return err
	}
	b.Close()
	c, err := put("c.appended", synced, true)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.WriteString(appended)
	return err
}

func check(dir string) error {
	out := map[string]*string{}
	for _, name := range []string{"a.synced", "b.unsynced", "c.appended"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		switch {
		case os.IsNotExist(err):
			out[name] = nil
		case err != nil:
			return err
		default:
			s := string(b)
			out[name] = &s
		}
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}
