package main

import "syscall"

// childAttr makes a node process the benchmark started die with it, even
// when the benchmark itself is killed.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
