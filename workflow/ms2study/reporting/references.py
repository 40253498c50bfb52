"""The sources the report's Methods cite (``reporting.methods``): each key's in-text citation and reference, as the
code's docstrings and CITATION.cff give them, and the libraries named beside pyOpenMS in its software sentence.
Data only; imports nothing.
"""

from __future__ import annotations

# key: (in-text citation, reference as the code's docstrings and CITATION.cff give it)
REFERENCES: dict[str, tuple[str, str]] = {
    "openms": ("Pfeuffer et al. 2024", "Pfeuffer J. et al. (2024) OpenMS 3. Nat. Methods."),
    "dunn": ("Dunn et al. 2011", "Dunn W.B. et al. (2011) Nat. Protoc. 6:1060-1083."),
    "dieterle": ("Dieterle et al. 2006", "Dieterle F. et al. (2006) Anal. Chem. 78:4281-4290."),
    "smyth": ("Smyth 2004", "Smyth G.K. (2004) Stat. Appl. Genet. Mol. Biol. 3:3."),
    "law": ("Law et al. 2014", "Law C.W. et al. (2014) Genome Biol. 15:R29."),
    "tusher": ("Tusher et al. 2001", "Tusher V.G., Tibshirani R., Chu G. (2001) Proc. Natl. Acad. Sci. USA 98:5116."),
    "freedman": ("Freedman &amp; Lane 1983", "Freedman D., Lane D. (1983) J. Bus. Econ. Stat. 1:292."),
    "bh": ("Benjamini &amp; Hochberg 1995", "Benjamini Y., Hochberg Y. (1995) J. R. Stat. Soc. B 57:289."),
    "storey": ("Storey et al. 2004", "Storey J.D., Taylor J.E., Siegmund D. (2004) J. R. Stat. Soc. B 66:187."),
    "knijnenburg": ("Knijnenburg et al. 2009", "Knijnenburg T.A. et al. (2009) Bioinformatics 25:i161."),
    "simes": ("Simes 1986", "Simes R.J. (1986) Biometrika 73:751."),
    "entropy": ("Li et al. 2021", "Li Y. et al. (2021) Nat. Methods 18:1524."),
    "schymanski": ("Schymanski et al. 2014", "Schymanski E.L. et al. (2014) Environ. Sci. Technol. 48:2097."),
    "bijlsma": ("Bijlsma et al. 2006", "Bijlsma S. et al. (2006) Anal. Chem. 78:567."),
    "chemrich": ("Barupal &amp; Fiehn 2017", "Barupal D.K., Fiehn O. (2017) Sci. Rep. 7:14567."),
    "glmnet": ("Friedman et al. 2010", "Friedman J., Hastie T., Tibshirani R. (2010) J. Stat. Softw. 33(1)."),
    "besag": ("Besag &amp; Clifford 1991", "Besag J., Clifford P. (1991) Biometrika 78:301-304."),
    "westfall": ("Westfall &amp; Young 1993", "Westfall P.H., Young S.S. (1993) Resampling-Based Multiple Testing."),
    "westerhuis": ("Westerhuis et al. 2010", "Westerhuis J.A. et al. (2010) Metabolomics 6:119."),
    "newcombe": ("Newcombe 2006", "Newcombe R.G. (2006) Stat. Med. 25:559."),
    "nadeau": ("Nadeau &amp; Bengio 2003", "Nadeau C., Bengio Y. (2003) Machine Learning 52:239."),
    "lundberg": ("Lundberg &amp; Lee 2017",
                 "Lundberg S.M., Lee S.-I. (2017) Adv. Neural Inf. Process. Syst. 30:4765."),
    "snakemake": ("Mölder et al. 2021", "Mölder F. et al. (2021) Sustainable data analysis with Snakemake. F1000Res."),
}
# the libraries named beside pyOpenMS in the software sentence (sections.PACKAGES names), as papers spell them
LIBRARIES = {"pyopenms": "pyOpenMS", "numpy": "NumPy", "scipy": "SciPy", "scikit-learn": "scikit-learn",
             "torch": "PyTorch", "numba": "numba", "polars": "polars", "rdkit": "RDKit"}
