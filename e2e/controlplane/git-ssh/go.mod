// A git host over SSH for the e2e suites (see main.go). Built by
// e2e/controlplane/build-git-ssh.sh.
module berth.dev/e2e/controlplane/git-ssh

go 1.26.3

require golang.org/x/crypto v0.58.0

require golang.org/x/sys v0.49.0 // indirect
