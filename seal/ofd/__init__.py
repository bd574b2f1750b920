"""OFD (GB/T 33190) documents: the safe zip package, XML, the document model, its writer and reader.

Shared by sealing (``seal``) and licence rendering (``license``): :mod:`seal.ofd.package` reads
untrusted packages within limits and writes them deterministically; :mod:`seal.ofd.xml` builds
and safely parses OFD XML; :mod:`seal.ofd.model` is the document model; :mod:`seal.ofd.writer`
and :mod:`seal.ofd.reader` turn it into a package and back.
"""
