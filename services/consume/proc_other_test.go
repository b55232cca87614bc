//go:build !linux

package consume

import "os/exec"

func dieWithTest(*exec.Cmd) {}
