"""IPython settings of the kernel in its pod: the ones kernel_agent.kernel passes on its command line.

gateway_provisioners' launcher starts the kernel class itself, without that command line, so the image installs
this file as /etc/ipython/ipython_kernel_config.py. tests/remote/test_k8s_manifests.py keeps the two equal.
"""

c = get_config()  # noqa: F821 - IPython provides it when it loads this file

# History in memory only (an sqlite database that is never a file), as Jupyter frontends expect; no jedi.
c.HistoryManager.hist_file = ":memory:"
c.Completer.use_jedi = False
c.IPKernelApp.quiet = True
