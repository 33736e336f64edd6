"""hambench.pipelines"""
